"""LayerNorms: channels-first for feature maps, autocast-aware for the
multiway layers."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from beit3_mm.registry import MODELS


@MODELS.register_module()
class LN2d(nn.LayerNorm):
    """LayerNorm over the channels of (B, C, H, W) maps, as in ViTDet.

    Registered in the root registry so that ``norm_cfg=dict(type='LN2d')``
    builds from the mmdet and mmseg scopes (mmpretrain's ``LayerNorm2d`` is
    visible from its own scope only).

    Built through ``mmcv.cnn.build_norm_layer``, whose default eps is 1e-5;
    ViTDet's is 1e-6 (``norm_cfg=dict(type='LN2d', eps=1e-6)``).
    """
    _abbr_ = 'ln'

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(
            x.permute(0, 2, 3, 1), self.normalized_shape, self.weight,
            self.bias, self.eps)
        # contiguous NCHW out, as a norm layer of a CNN gives: mmcv's RoIAlign
        # reads its input's raw buffer as NCHW, and convolutions would carry
        # a channels-last layout on to it
        return x.permute(0, 3, 1, 2).contiguous()


def autocast_dtype(device_type: str) -> Optional[torch.dtype]:
    """The autocast dtype of ``device_type``, or None outside autocast."""
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return None


class AutocastLayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` that hands the autocast dtype on, on the CPU.

    Autocast runs LayerNorm in float32: a bf16 input is copied to float32,
    and the float32 output is copied back by every matrix product that
    reads it. Under CPU autocast this norm runs PyTorch's mixed-type kernel
    instead (bf16 input, float32 affine, float32 statistics) and returns the
    autocast dtype; a float32 input (the residual stream) is normalised in
    float32 and cast once. Outside autocast, and on other devices, it is
    ``nn.LayerNorm``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = autocast_dtype(x.device.type)
        if dtype is None or x.device.type != 'cpu':
            return super().forward(x)
        with torch.autocast('cpu', enabled=False):
            y = F.layer_norm(x, self.normalized_shape, self.weight,
                             self.bias, self.eps)
        return y.to(dtype)
