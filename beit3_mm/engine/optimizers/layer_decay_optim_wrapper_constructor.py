"""Layer-wise learning-rate decay for any model with a BEiT-3 backbone."""
from typing import Dict, List, Optional, Tuple

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor

from beit3_mm.registry import OPTIM_WRAPPER_CONSTRUCTORS

# Official no-weight-decay names besides biases and 1-D parameters.
NO_DECAY_SUFFIXES = ('vision_embed.cls_token',
                     'encoder.embed_positions.A.weight', 'logit_scale')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Parameter groups with the official BEiT-3 layer-wise lr decay.

    Works for mmpretrain, mmdet and mmseg models alike: the depth of a
    parameter comes from the first :class:`~beit3_mm.models.BEiT3` module
    found in the model (``get_layer_depth``); everything outside it (necks,
    heads, adapters) is at the top depth ``L + 1``. A parameter at depth
    ``d`` gets ``lr * layer_decay_rate ** (L + 1 - d)``. Biases, 1-D
    parameters, the CLS token, the vision position table and
    ``logit_scale`` get no weight decay, as in the official code.

    The first parameter group is a top-depth one (lr scale 1.0), so the
    ``lr`` that mmengine logs is the base learning rate.

    ``paramwise_cfg``:
        - ``layer_decay_rate`` (float): the decay. Required.
        - ``custom_keys`` (dict): ``{substring: dict(lr_mult=..,
          decay_mult=..)}`` applied on top of the decay, the first matching
          substring wins (e.g. the VQA head's ``lr_mult=20``).
    """

    def __init__(self, optim_wrapper_cfg: dict,
                 paramwise_cfg: Optional[dict] = None):
        paramwise_cfg = paramwise_cfg or {}
        if 'layer_decay_rate' not in paramwise_cfg:
            raise KeyError('LayerDecayOptimWrapperConstructor needs '
                           'paramwise_cfg.layer_decay_rate')
        unknown = set(paramwise_cfg) - {'layer_decay_rate', 'custom_keys'}
        if unknown:
            raise KeyError(f'unknown paramwise_cfg keys for '
                           f'LayerDecayOptimWrapperConstructor: '
                           f'{sorted(unknown)}')
        # A non-empty paramwise_cfg makes the base class call add_params.
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        self.layer_decay_rate = float(paramwise_cfg['layer_decay_rate'])
        self.custom_keys = paramwise_cfg.get('custom_keys', {})

    @staticmethod
    def _find_backbone(module: nn.Module) -> Tuple[str, nn.Module]:
        from beit3_mm.models import BEiT3
        for name, m in module.named_modules():
            if isinstance(m, BEiT3):
                return (name + '.' if name else ''), m
        raise TypeError(f'{type(module).__name__} has no BEiT3 module for '
                        f'layer-wise lr decay')

    def _custom(self, name: str) -> Tuple[float, float]:
        for key, cfg in self.custom_keys.items():
            if key in name:
                return cfg.get('lr_mult', 1.), cfg.get('decay_mult', 1.)
        return 1., 1.

    def add_params(self, params: List[dict], module: nn.Module,
                   **kwargs) -> None:
        prefix, backbone = self._find_backbone(module)
        groups: Dict[tuple, dict] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            depth, num_depths = backbone.get_layer_depth(name, prefix)
            no_decay = (param.ndim <= 1 or name.endswith('.bias')
                        or name.endswith(NO_DECAY_SUFFIXES))
            lr_mult, decay_mult = self._custom(name)
            scale = self.layer_decay_rate**(num_depths - 1 - depth) * lr_mult
            wd = 0. if no_decay else (self.base_wd or 0.) * decay_mult
            key = (depth, wd, lr_mult)
            if key not in groups:
                groups[key] = dict(
                    params=[], lr=self.base_lr * scale, weight_decay=wd,
                    layer_depth=depth, lr_scale=scale)
            groups[key]['params'].append(param)
        # Top depth and plain multipliers first: that group's lr is logged.
        order = sorted(groups, key=lambda k: (-k[0], k[2] != 1., -k[1]))
        for key in order:
            group = groups[key]
            print_log(
                f'layer decay group: depth {group["layer_depth"]}, lr scale '
                f'{group["lr_scale"]:.4g}, weight decay '
                f'{group["weight_decay"]:g}, {len(group["params"])} tensors',
                logger='current')
            params.append(group)
