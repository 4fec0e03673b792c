"""DeepSpeed ZeRO through mmengine's ``FlexibleRunner``."""
import importlib
import json
import os
import os.path as osp
from contextlib import contextmanager
from typing import Any, Iterator, List, Optional

import torch
import torch.nn as nn
from mmengine._strategy import deepspeed as mmengine_deepspeed
from mmengine._strategy.base import BaseStrategy
from mmengine.dist import is_distributed

from beit3_mm.registry import OPTIMIZERS, STRATEGIES
from beit3_mm.utils import read_checkpoint
from .lockstep import require_lockstep_passes

DeepSpeedStrategy = mmengine_deepspeed.DeepSpeedStrategy


def register_deepspeed_optimizers() -> List[str]:
    """Register the optimizers that deepspeed still has; mmengine 0.10.7's
    own function imports the 1-bit optimizers, which deepspeed 0.19
    dropped, and fails on a second strategy in one process."""
    from deepspeed.ops.adam import DeepSpeedCPUAdam, FusedAdam
    from deepspeed.ops.lamb import FusedLamb
    names = []
    for optimizer in (DeepSpeedCPUAdam, FusedAdam, FusedLamb):
        OPTIMIZERS.register_module(module=optimizer, force=True)
        names.append(optimizer.__name__)
    return names


# DeepSpeedStrategy.__init__ calls it by its module-level name.
mmengine_deepspeed.register_deepspeed_optimizers = \
    register_deepspeed_optimizers


def _deepspeed_safe_globals() -> list:
    """The classes that DeepSpeed checkpoints pickle besides tensors,
    containers and mmengine's state."""
    from deepspeed.runtime.fp16.loss_scaler import (DynamicLossScaler,
                                                    LossScaler)
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address
    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


@contextmanager
def weights_only_torch_load() -> Iterator[None]:
    """Inside, every ``torch.load`` reads with
    :func:`beit3_mm.utils.read_checkpoint` (``weights_only=True``, the
    mmengine allow-list, DeepSpeed's loss scalers and ZeRO stage enum),
    whatever its caller asks: DeepSpeed loads its checkpoints with
    ``weights_only=False``."""
    original = torch.load
    safe_globals = _deepspeed_safe_globals()

    def load(f: Any, map_location: Any = None, *args, **kwargs) -> Any:
        if not isinstance(f, (str, os.PathLike)):
            raise TypeError(f'weights_only_torch_load reads files by path, '
                            f'got {type(f).__name__}')
        torch.load = original
        try:
            with torch.serialization.safe_globals(safe_globals):
                return read_checkpoint(
                    os.fspath(f),
                    mmap=bool(kwargs.get('mmap')),
                    map_location=map_location)
        finally:
            torch.load = load

    torch.load = load
    try:
        yield
    finally:
        torch.load = original


def check_no_frozen_target_generator(model: nn.Module) -> None:
    """Refuse a frozen ``target_generator`` (a tokenizer computing the
    targets, e.g. VQ-KD) registered in the module tree: ZeRO-3 would shard
    it and cast it with the model (bf16 targets, a gather per step).
    :class:`~beit3_mm.models.selfsup.BEiT3Pretrain` keeps its tokenizer
    outside the tree, which ZeRO-3 never sees."""
    for name, module in model.named_modules():
        if name.split('.')[-1] != 'target_generator':
            continue
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            raise ValueError(
                f'ZeRO-3 would shard and cast the frozen tokenizer '
                f'{name!r} ({type(module).__name__}) with the model: keep '
                f'it outside the module tree (object.__setattr__, as '
                f'BEiT3Pretrain does)')


@STRATEGIES.register_module()
class BEiT3DeepSpeedStrategy(DeepSpeedStrategy):
    """mmengine's :class:`DeepSpeedStrategy`, for any beit3-mm config, on
    GPUs and on the CPU (gloo).

    On top of mmengine's strategy:

    - a process group started before (``tools/train.py`` starts gloo on
      machines without GPUs) is kept: mmengine's set-up would call
      ``torch.cuda.set_device``; on the CPU, DeepSpeed's shared-memory
      all-reduce kernel (inference only) is not compiled;
    - ``train_micro_batch_size_per_gpu`` comes from the train dataloader
      (mmengine sets it for its own class name only);
    - the config's ``optim_wrapper`` becomes a ``DeepSpeedOptimWrapper``:
      ``clip_grad=dict(max_norm=...)`` becomes ``gradient_clipping``, and
      without ``clip_grad`` nothing is clipped (DeepSpeed's own default
      clips the gradient norm to 1.0, silently),
      ``accumulative_counts`` ``gradient_accumulation_steps``, AMP
      settings are dropped (the strategy's ``bf16`` / ``fp16`` decide);
    - the runner's checkpoint hooks run (``before_save_checkpoint``,
      ``after_load_checkpoint``: the random states of an exact resume);
    - DeepSpeed checkpoints are read with ``weights_only=True``
      (:func:`weights_only_torch_load`);
    - ``load_from`` and ``tools/test.py`` take an ordinary beit3-mm
      checkpoint too (a file, not a DeepSpeed folder), also under ZeRO-3;
      the fp32 master weights are then refreshed from the loaded ones.
    - testing under a ZeRO-1/2 config runs without ZeRO (it shards
      only what training has);
    - fp16 on the CPU stops at build time, and so does ZeRO-3 on a model
      whose frozen ``target_generator`` is in its module tree
      (:func:`check_no_frozen_target_generator`);
    - models with ``lockstep_passes`` make the same passes on every rank
      (:func:`require_lockstep_passes`).
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        # plain containers: DeepSpeed pickles its config in the checkpoints
        self.config = json.loads(json.dumps(self.config))
        # DeepSpeed 0.19 clips the global gradient norm to 1.0 unless
        # told otherwise (GRADIENT_CLIPPING_DEFAULT): the optim wrapper's
        # clip_grad decides, as under Runner (build_optim_wrapper).
        self.config.setdefault('gradient_clipping', 0.0)
        if (not torch.cuda.is_available()
                and self.config.get('fp16', {}).get('enabled', False)):
            raise ValueError('DeepSpeed fp16 does not run on the CPU: use '
                             'bf16=dict(enabled=True) instead')

    def _setup_distributed(self,
                           launcher: Optional[str] = None,
                           backend: str = 'nccl',
                           **kwargs) -> None:
        if not is_distributed():
            super()._setup_distributed(launcher, backend, **kwargs)

    def build_optim_wrapper(self, optim_wrapper: Any,
                            model: Optional[nn.Module] = None):
        if isinstance(optim_wrapper, dict):
            optim_wrapper = dict(optim_wrapper, type='DeepSpeedOptimWrapper')
            for key in ('loss_scale', 'dtype', 'use_fsdp'):
                optim_wrapper.pop(key, None)
            clip_grad = optim_wrapper.pop('clip_grad', None)
            if clip_grad:
                if clip_grad.get('type', 'norm') != 'norm' or set(
                        clip_grad) - {'type', 'max_norm'}:
                    raise ValueError(
                        f'DeepSpeed clips by the global norm only '
                        f'(gradient_clipping): use '
                        f'clip_grad=dict(max_norm=...), got {clip_grad}')
                self.config['gradient_clipping'] = clip_grad['max_norm']
            counts = optim_wrapper.pop('accumulative_counts', 1)
            if counts > 1:
                self.config['gradient_accumulation_steps'] = counts
        return super().build_optim_wrapper(optim_wrapper, model)

    def _wrap_model(self, model: nn.Module):
        require_lockstep_passes(model)
        zero = self.config.get('zero_optimization', {})
        if zero.get('stage', 0) >= 3:
            check_no_frozen_target_generator(model)
        if not torch.cuda.is_available():
            # On the CPU, DeepSpeed's comm backend JIT-compiles a
            # shared-memory all-reduce (~100 s on 2 cores) that only
            # inference_all_reduce (tensor-parallel inference) uses. (The
            # attribute deepspeed.comm.torch is the torch module, which
            # deepspeed.comm re-exports: patch the backend module itself.)
            backend = importlib.import_module('deepspeed.comm.torch')
            backend.build_shm_op = lambda: None
        if not hasattr(self, 'optim_wrapper') and zero.get('stage', 0) < 3:
            # test / val: ZeRO-1/2 shard optimizer states and gradients only
            self.config['zero_optimization'] = dict(zero, stage=0)
        self.config.setdefault(
            'train_micro_batch_size_per_gpu',
            self.dispatch_kwargs.get('train_micro_batch_size_per_gpu', 1))
        return super()._wrap_model(model)

    def save_checkpoint(self,
                        filename: str,
                        *,
                        save_optimizer: bool = True,
                        save_param_scheduler: bool = True,
                        extra_ckpt: Optional[dict] = None,
                        callback=None) -> None:
        extra_ckpt = dict(extra_ckpt or {})
        if callback is not None:
            callback(extra_ckpt)
        super().save_checkpoint(
            filename,
            save_optimizer=save_optimizer,
            save_param_scheduler=save_param_scheduler,
            extra_ckpt=extra_ckpt)

    def load_checkpoint(self, filename: str, **kwargs) -> dict:
        """A DeepSpeed checkpoint (a folder), or an ordinary one (a file).
        """
        if not osp.isdir(filename):
            return BaseStrategy.load_checkpoint(self, filename, **kwargs)
        with weights_only_torch_load():
            checkpoint = super().load_checkpoint(filename)
        if kwargs.get('callback') is not None:
            kwargs['callback'](checkpoint)
        return checkpoint

    def load_model_state_dict(self, state_dict: dict, **kwargs) -> None:
        """Load an ordinary state dict into the (ZeRO-3: gathered) module
        and refresh the fp32 master weights."""
        import deepspeed
        engine = self.model.model
        params = list(engine.module.parameters())
        with deepspeed.zero.GatheredParameters(
                params,
                modifier_rank=0,
                enabled=engine.zero_optimization_partition_weights()):
            BaseStrategy.load_model_state_dict(self, state_dict, **kwargs)
        if hasattr(engine.optimizer, 'refresh_fp32_params'):
            engine.optimizer.refresh_fp32_params()

    def resume(self, filename: str, *, callback=None, **kwargs) -> dict:
        with weights_only_torch_load():
            checkpoint = super().resume(filename, **kwargs)
        if callback is not None:
            callback(checkpoint)
        return checkpoint
