"""The random states of every rank in the checkpoint, for an exact resume."""
import random
from typing import List, Optional, Union

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook

from beit3_mm.registry import HOOKS

DATA_BATCH = Optional[Union[dict, tuple, list]]


def get_random_states() -> dict:
    """This process's Python, NumPy, torch (and CUDA) random states, as
    tensors and plain containers (``torch.load(weights_only=True)`` reads
    them without an allow-list)."""
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    states = dict(
        python=random.getstate(),
        numpy=dict(
            keys=torch.from_numpy(keys.astype(np.int64)),
            pos=pos,
            has_gauss=has_gauss,
            cached_gaussian=cached_gaussian),
        torch=torch.get_rng_state())
    if torch.cuda.is_initialized():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: dict) -> None:
    """Restore what :func:`get_random_states` returned."""
    random.setstate(states['python'])
    numpy = states['numpy']
    np.random.set_state(
        ('MT19937', numpy['keys'].cpu().numpy().astype(np.uint32),
         numpy['pos'], numpy['has_gauss'], numpy['cached_gaussian']))
    torch.set_rng_state(states['torch'].cpu())
    if 'cuda' in states and torch.cuda.is_available():
        for device, state in enumerate(
                states['cuda'][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state.cpu(), device)


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save every rank's random states in the checkpoint and restore them
    on resume, so that a resumed run draws the same random numbers as an
    uninterrupted one.

    The checkpoint gets ``random_states``, one dict per rank (Python, NumPy,
    torch, and CUDA when initialised). On resume (not ``load_from``) this
    rank's states come back in ``before_train``, after the Runner's own
    resume steps (it reseeds when the checkpoint's seed differs from the
    config's). Validation follows a checkpoint and draws random numbers (a
    DataLoader iterator takes a seed from torch's generator), so the states
    are put back after each validation: training does not depend on it.

    Exact, given a fixed ``randomness.seed`` (the sampler's shuffling and
    the workers' seeds are built from it before resuming), for an
    epoch-based loop: the main process's randomness (drop path, dropout,
    augmentation with ``num_workers=0``) and workers with
    ``persistent_workers=False``, which mmengine's ``worker_init_fn``
    reseeds with ``num_workers * rank + worker_id + seed`` every epoch. Not
    exact:

    - persistent workers keep their generators across epochs; no
      checkpoint holds them.
    - ``IterBasedTrainLoop`` reaches the saved iteration by drawing the
      trained batches again after ``before_train``, running their pipeline:
      with ``num_workers=0`` from the restored states, and with workers and
      a finite sampler every new pass takes a seed from torch's generator.
      (With workers and an infinite sampler the main process draws nothing
      there and the workers repeat their own draws.)
    - another world size: the data are sharded otherwise, so there is
      nothing exact to keep; the hook warns and keeps the fresh seed rather
      than refuse a resume mmengine allows.

    Only rank 0 runs ``before_save_checkpoint``: every rank gathers its
    states in ``after_train_epoch`` / ``after_train_iter`` when a
    :class:`CheckpointHook` (lower priority, so after this hook) is about
    to save, and in ``before_val`` for the best checkpoint.
    """

    priority = 'LOW'

    def __init__(self) -> None:
        self._to_save: Optional[List[dict]] = None
        self._before_val: Optional[List[dict]] = None
        self._to_restore: Optional[dict] = None

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: DATA_BATCH = None,
                         outputs: Optional[dict] = None) -> None:
        self._gather_if_saving(runner, by_epoch=False)

    def after_train_epoch(self, runner) -> None:
        self._gather_if_saving(runner, by_epoch=True)

    def before_val(self, runner) -> None:
        """Keep the training states (of all ranks, for a best checkpoint)."""
        self._before_val = all_gather_object(get_random_states())

    def after_val(self, runner) -> None:
        """Put back the states that training had before validation."""
        if self._before_val is not None:
            set_random_states(self._before_val[get_rank()])
            self._before_val = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Add ``random_states``, one dict per rank (on rank 0 only)."""
        states = self._before_val or self._to_save
        self._to_save = None
        if states is None:
            if get_world_size() > 1:
                runner.logger.warning(
                    'RandomStateHook: the checkpoint is saved outside '
                    'CheckpointHook; the other ranks\' random states are '
                    'not known, so none are saved')
                return
            states = [get_random_states()]
        checkpoint['random_states'] = states

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """On resume, take this rank's states for ``before_train``."""
        if not runner._resume:
            return
        states = checkpoint.get('random_states')
        if states is None:
            runner.logger.warning(
                'The checkpoint holds no random states: the resumed run '
                'draws other random numbers than an uninterrupted one')
        elif len(states) != get_world_size():
            runner.logger.warning(
                f'The checkpoint holds the random states of {len(states)} '
                f'ranks, this run has {get_world_size()}: keeping the '
                'fresh seed')
        else:
            self._to_restore = states[get_rank()]

    def before_train(self, runner) -> None:
        """Restore the resumed states."""
        if self._to_restore is not None:
            set_random_states(self._to_restore)
            self._to_restore = None

    def _gather_if_saving(self, runner, by_epoch: bool) -> None:
        """Gather every rank's states if a CheckpointHook saves now (it
        runs after this hook)."""
        self._to_save = None
        if get_world_size() > 1 and any(
                self._saves(hook, runner, by_epoch)
                for hook in runner.hooks if isinstance(hook, CheckpointHook)):
            self._to_save = all_gather_object(get_random_states())

    @staticmethod
    def _saves(hook: CheckpointHook, runner, by_epoch: bool) -> bool:
        """Whether ``hook`` saves a checkpoint in this ``after_train_epoch``
        (``by_epoch``) or ``after_train_iter``, by its own rule."""
        if hook.by_epoch != by_epoch:
            return False
        if by_epoch:
            due = hook.every_n_epochs(runner, hook.interval, hook.save_begin)
            last = hook.is_last_train_epoch(runner)
        else:
            due = hook.every_n_train_iters(runner, hook.interval,
                                           hook.save_begin)
            last = hook.is_last_train_iter(runner)
        return due or (hook.save_last and last)
