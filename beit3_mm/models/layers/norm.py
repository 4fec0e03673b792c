"""Channels-first LayerNorm for convolutional feature maps."""
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
