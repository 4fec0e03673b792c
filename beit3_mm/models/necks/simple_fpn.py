"""ViTDet's simple feature pyramid."""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from mmengine.model import BaseModule

from beit3_mm.registry import MODELS
from ..layers import LN2d


@MODELS.register_module()
class SimpleFPN(BaseModule):
    """Simple feature pyramid from one stride-16 map (`ViTDet
    <https://arxiv.org/abs/2203.16527>`_).

    Stride 4: two 2x2 transposed convs (C -> C/2 -> C/4) with a norm and
    GELU between; stride 8: one transposed conv (C/2); stride 16: the map;
    stride 32: 2x2 max-pool. Each level then gets a 1x1 and a 3x3 conv with
    a norm; further levels subsample the last output by 2.

    Args:
        backbone_channel (int): C of the backbone map.
        in_channels (Sequence[int]): widths of the four levels before the
            lateral convs; must be [C/4, C/2, C, C].
        out_channels (int): width of every output.
        num_outs (int): number of outputs (>= 4).
        norm_cfg (dict): norm after the transposed conv and in the convs.
            Defaults to ViTDet's LayerNorm over channels with eps 1e-6,
            given as the class :class:`LN2d` (the name 'LN2d' is
            mmpretrain's ``LayerNorm2d`` in the mmpretrain scope).
        init_cfg (dict, optional): initialisation.
    """

    def __init__(self,
                 backbone_channel: int,
                 in_channels: Sequence[int],
                 out_channels: int,
                 num_outs: int,
                 norm_cfg: dict = dict(type=LN2d, eps=1e-6),
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        C = backbone_channel
        expected = [C // 4, C // 2, C, C]
        if list(in_channels) != expected:
            raise ValueError(f'SimpleFPN in_channels={list(in_channels)} do '
                             f'not fit backbone_channel={C}: expected '
                             f'{expected}')
        if num_outs < 4:
            raise ValueError(f'SimpleFPN needs num_outs >= 4, got {num_outs}')
        self.backbone_channel = C
        self.num_outs = num_outs
        self.fpn1 = nn.Sequential(
            nn.ConvTranspose2d(C, C // 2, 2, 2),
            build_norm_layer(norm_cfg, C // 2)[1], nn.GELU(),
            nn.ConvTranspose2d(C // 2, C // 4, 2, 2))
        self.fpn2 = nn.ConvTranspose2d(C, C // 2, 2, 2)
        self.fpn3 = nn.Identity()
        self.fpn4 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.lateral_convs = nn.ModuleList(
            ConvModule(c, out_channels, 1, norm_cfg=norm_cfg, act_cfg=None)
            for c in in_channels)
        self.fpn_convs = nn.ModuleList(
            ConvModule(out_channels, out_channels, 3, padding=1,
                       norm_cfg=norm_cfg, act_cfg=None)
            for _ in in_channels)

    def forward(self, inputs: Sequence[torch.Tensor]) -> Tuple[torch.Tensor]:
        """The last backbone map (B, C, H, W) -> ``num_outs`` maps at
        strides 4, 8, 16, 32, 64... of the input image."""
        x = inputs[-1]
        if x.shape[1] != self.backbone_channel:
            raise ValueError(
                f'SimpleFPN was built for backbone_channel='
                f'{self.backbone_channel}, the backbone gave {x.shape[1]} '
                f'channels; set the neck widths from the backbone arch')
        levels = [self.fpn1(x), self.fpn2(x), self.fpn3(x), self.fpn4(x)]
        outs: List[torch.Tensor] = [
            fpn(lateral(level)) for level, lateral, fpn in zip(
                levels, self.lateral_convs, self.fpn_convs)
        ]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return tuple(outs)
