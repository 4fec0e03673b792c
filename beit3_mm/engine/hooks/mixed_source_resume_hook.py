"""Resuming a :class:`~beit3_mm.datasets.pretrain.MixedSourceSampler` run
without loading the data of the finished iterations."""
from mmengine.hooks import Hook
from mmengine.runner.loops import _InfiniteDataloaderIterator

from beit3_mm.datasets.pretrain import MixedSourceSampler
from beit3_mm.registry import HOOKS


class _SkipFirst:
    """Returns None for the first ``num`` calls of ``next``, then the
    batches of ``iterator``."""

    def __init__(self, iterator, num: int) -> None:
        self._iterator, self._num = iterator, num

    def __iter__(self):
        return self

    def __next__(self):
        if self._num > 0:
            self._num -= 1
            return None
        return next(self._iterator)


@HOOKS.register_module()
class MixedSourceResumeHook(Hook):
    """Resume a :class:`MixedSourceSampler` run without loading the data of
    the finished iterations.

    mmengine's ``IterBasedTrainLoop`` resumes by drawing (and discarding)
    every finished batch, which for a long pretraining run means hours of
    data loading. Before training this hook checks that the data loader's
    ``batch_size`` matches the sampler's and, when resuming at iteration
    ``k``, gives the sampler the run's seed (restored from the checkpoint)
    and ``start_iter = k``, and lets the loop's ``k`` skip steps draw
    nothing.
    """

    # before RandomStateHook (LOW) restores the random states: a new data
    # loader iterator draws its base seed from torch's generator
    priority = 'BELOW_NORMAL'

    def before_train(self, runner) -> None:
        loop = runner.train_loop
        loader = loop.dataloader
        sampler = loader.sampler
        if not isinstance(sampler, MixedSourceSampler):
            raise TypeError(f'MixedSourceResumeHook needs a MixedSourceSampler'
                            f', got {type(sampler).__name__}: set train_'
                            f"dataloader.sampler=dict(type='MixedSource"
                            f"Sampler', ...) or drop the hook")
        if loader.batch_size != sampler.batch_size:
            raise ValueError(
                f'train_dataloader.batch_size={loader.batch_size} differs '
                f'from its sampler batch_size={sampler.batch_size}: set both '
                f'to the same value')
        if loop.iter == 0:
            return
        randomness = getattr(runner, '_randomness_cfg', {}) or {}
        if not randomness.get('diff_rank_seed', False):
            sampler.seed = runner.seed
        sampler.start_iter = loop.iter
        loop.dataloader_iterator = _SkipFirst(
            _InfiniteDataloaderIterator(loader), loop.iter)
