"""FSDP through mmengine's ``FlexibleRunner``, on GPUs and on the CPU."""
import copy
import dataclasses
from typing import Any, Optional

import torch
import torch.nn as nn
from mmengine._strategy import BaseStrategy, FSDPStrategy
from mmengine.optim import BaseOptimWrapper
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from torch.distributed.fsdp._runtime_utils import _lazy_init
from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

from beit3_mm.models.layers import MultiwayTransformerLayer
from beit3_mm.registry import FUNCTIONS, STRATEGIES
from .lockstep import require_lockstep_passes


@FUNCTIONS.register_module()
def multiway_layer_policy(module: nn.Module, recurse: bool,
                          nonwrapped_numel: int) -> bool:
    """FSDP auto-wrap policy: one unit per
    :class:`~beit3_mm.models.layers.MultiwayTransformerLayer`, the rest of
    the model in the root unit."""
    return transformer_auto_wrap_policy(
        module, recurse, nonwrapped_numel,
        transformer_layer_cls={MultiwayTransformerLayer})


@FUNCTIONS.register_module()
def is_multiway_layer(module: nn.Module) -> bool:
    """``check_fn`` of activation checkpointing per multiway layer."""
    return isinstance(module, MultiwayTransformerLayer)


@STRATEGIES.register_module()
class BEiT3FSDPStrategy(FSDPStrategy):
    """mmengine's :class:`FSDPStrategy`, also on the CPU.

    torch's FSDP runs on the CPU (gloo) only with
    ``device_id=torch.device('cpu')``, where mmengine passes the integer
    ``LOCAL_RANK``; fp16 parameters on the CPU stop at build time. On the
    CPU, optimizer states are gathered without ``offload_to_cpu``: with it,
    torch 2.14 saves the last gathered state (Adam's ``exp_avg_sq``) under
    every state's name. Before
    a checkpoint loads, FSDP is initialised from its root: the runner's
    ``after_load_checkpoint`` hooks may call ``state_dict()`` of the
    wrapped module, which would otherwise make an inner unit a root.
    Optimizer states are saved from the optimizer (mmengine passes the
    optim wrapper, whose extra base-lr group shifts FSDP's parameter
    mapping) and resume with torch 2's argument order of
    ``FSDP.optim_state_dict_to_load`` (mmengine passes torch 1's). Models
    with ``lockstep_passes`` make the same passes on every rank
    (:func:`require_lockstep_passes`).

    The optimizer's parameter groups are made on the model before it is
    wrapped, then moved onto FSDP's parameters by name: with
    ``use_orig_params=True`` FSDP shows every parameter as a flat 1-D
    shard, which the optimizer constructors would take for a bias or a
    norm (no weight decay).
    """

    def prepare(self, model, *, optim_wrapper=None, **kwargs):
        self._optim_wrapper_cfg = copy.deepcopy(optim_wrapper)
        return super().prepare(model, optim_wrapper=optim_wrapper, **kwargs)

    def load_checkpoint(self, filename: str, **kwargs) -> dict:
        _lazy_init(self.model, self.model)
        return super().load_checkpoint(filename, **kwargs)

    def _wrap_model(self, model: nn.Module) -> Any:
        require_lockstep_passes(model)
        if not torch.cuda.is_available():
            wrapper = dict(self.model_wrapper
                           or dict(type='MMFullyShardedDataParallel'))
            precision = wrapper.get('mixed_precision') or {}
            if isinstance(precision, dict) and 'float16' in (
                    str(precision.get('param_dtype')),
                    str(precision.get('reduce_dtype'))):
                raise ValueError(
                    'FSDP fp16 mixed precision does not run on the CPU: '
                    "use param_dtype='bfloat16'")
            wrapper.setdefault('device_id', torch.device('cpu'))
            self.model_wrapper = wrapper
            # torch's FSDP gathers every optimizer state (exp_avg, then
            # exp_avg_sq) into one reused buffer and keeps views of it,
            # copied out only by the clone of offload_to_cpu=False or by
            # .cpu(), which on the CPU copies nothing: every state saved
            # would be the last one gathered (Adam's exp_avg ==
            # exp_avg_sq). The CPU has nothing to offload to anyway.
            if getattr(self.optim_state_dict_config, 'offload_to_cpu',
                       False):
                self.optim_state_dict_config = dataclasses.replace(
                    self.optim_state_dict_config, offload_to_cpu=False)
        self._unwrapped: Optional[BaseOptimWrapper] = None
        cfg = getattr(self, '_optim_wrapper_cfg', None)
        if isinstance(cfg, dict) and 'optimizer' in cfg:
            if cfg.get('type') in ('AmpOptimWrapper',
                                   'MixedPrecisionOptimWrapper'):
                cfg.setdefault('use_fsdp', True)
            self._unwrapped = BaseStrategy.build_optim_wrapper(
                self, cfg, model)
            self._param_names = {
                id(p): name for name, p in model.named_parameters()
            }
        try:
            return super()._wrap_model(model)
        except ValueError as e:
            if 'uniform `requires_grad`' not in str(e):
                raise
            raise ValueError(
                'FSDP with use_orig_params=False cannot put frozen and '
                'trained parameters in one unit: set '
                'model_wrapper.use_orig_params=True (as '
                'configs/_base_/strategies/fsdp_bf16.py does)') from None

    def build_optim_wrapper(self, optim_wrapper: Any,
                            model: Optional[nn.Module] = None):
        if not isinstance(optim_wrapper, dict) or self._unwrapped is None:
            return super().build_optim_wrapper(optim_wrapper, model)
        wrapper, self._unwrapped = self._unwrapped, None
        sharded = {
            name.replace('_fsdp_wrapped_module.', '').replace(
                '_checkpoint_wrapped_module.', ''): p
            for name, p in model.named_parameters()
        }
        for group in wrapper.optimizer.param_groups:  # no state yet
            group['params'] = [
                sharded[self._param_names[id(p)]] for p in group['params']
            ]
        return wrapper

    def optim_state_dict(self) -> dict:
        state_dict = FSDP.optim_state_dict(self.model,
                                           self.optim_wrapper.optimizer)
        wrapper_state = self.optim_wrapper.state_dict()
        state_dict.update({
            k: wrapper_state[k]
            for k in ('loss_scaler', 'base_param_settings')
            if k in wrapper_state
        })
        return state_dict

    def load_optim_state_dict(self, state_dict: dict) -> None:
        extra = {
            k: state_dict.pop(k)
            for k in ('loss_scaler', 'base_param_settings') if k in state_dict
        }
        state_dict = FSDP.optim_state_dict_to_load(
            self.model, self.optim_wrapper.optimizer, state_dict)
        self.optim_wrapper.load_state_dict(dict(state_dict, **extra))
