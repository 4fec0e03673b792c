"""ViT-Adapter around the BEiT-3 image path, for dense prediction."""
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmcv.ops import MultiScaleDeformableAttention
from mmengine.model.weight_init import trunc_normal_

from beit3_mm.registry import MODELS
from ..layers.adapter import (InteractionBlock, SpatialPriorModule,
                              deform_inputs, split_levels)
from .beit3_dense import BEiT3Dense

Tensor = torch.Tensor

# The spatial prior's coarsest stride: input sides must divide by it.
PRIOR_STRIDE = 32
NUM_STAGES = 4


def default_interaction_indexes(num_layers: int) -> List[List[int]]:
    """Four contiguous stages of (nearly) equal depth: [[0, 2], [3, 5],
    [6, 8], [9, 11]] for 12 layers, [[0, 5], ..., [18, 23]] for 24."""
    if num_layers < NUM_STAGES:
        raise ValueError(f'BEiT3Adapter needs at least {NUM_STAGES} layers '
                         f'for its {NUM_STAGES} interaction stages, the arch '
                         f'has {num_layers}')
    ends = [num_layers * (i + 1) // NUM_STAGES - 1 for i in range(NUM_STAGES)]
    return [[start, end] for start, end in zip([0] + [e + 1 for e in ends],
                                               ends)]


@MODELS.register_module()
class BEiT3Adapter(BEiT3Dense):
    """BEiT-3 vision experts with ViT-Adapter (`Vision Transformer Adapter
    for Dense Predictions <https://arxiv.org/abs/2205.08534>`_).

    The backbone is :class:`BEiT3Dense` (its layers are driven stage by
    stage, not copied): a spatial prior module sees the image, and in each
    of four interaction stages an injector writes the prior into the patch
    tokens before the stage's layers and extractors read the tokens back
    into the prior after them. The CLS token runs through the layers but
    takes no part in the interactions. Outputs are four maps at strides 4,
    8, 16 and 32 (the prior plus the resized tokens of each stage, then a
    norm), as Mask2Former / UPerNet expect.

    Released BEiT-3 files load into the backbone part with nothing missing;
    the adapter's parameters are new (the loader logs them as such).

    Args:
        arch, pretrain_img_size, drop_path_rate, with_cp, frozen_stages:
            see :class:`BEiT3Dense`. ``with_cp`` also checkpoints the
            injectors and extractors.
        window_size (int): window attention in the layers outside
            ``global_attn_indexes``; 0 (default) for global attention
            everywhere, as ViT-Adapter's BEiT.
        global_attn_indexes (Sequence[int], optional): see
            :class:`BEiT3Dense`.
        interaction_indexes (Sequence[Sequence[int]], optional): the
            [first, last] layer of each of the four stages, contiguous and
            covering every layer. Defaults to four equal stages.
        conv_inplane (int): width of the spatial prior's stem. Defaults to
            64.
        deform_num_heads (int, optional): heads of the deformable
            attention. Defaults to the backbone's heads.
        deform_num_points (int): sampling points per head and level.
            Defaults to 4.
        deform_ratio (float): width of the deformable value projection
            over D. Defaults to 1.0 (ViT-Adapter's BEiT recipes use 0.5).
        with_cffn (bool): ConvFFN in the extractors. Defaults to True.
        cffn_ratio (float): hidden width of the ConvFFN over D. Defaults to
            0.25.
        injector_init_values (float): initial gate ``gamma`` of the
            injectors; 0 makes them the identity. Defaults to 0.
        num_extra_extractors (int): extra extractors in the last stage.
            Defaults to 2 (ViT-Adapter).
        norm_cfg (dict): norm of the spatial prior and of the four outputs.
            Defaults to SyncBN (the Runner reverts it to BN outside
            distributed runs).
        init_cfg (dict, optional): ``dict(type='Pretrained',
            checkpoint=PATH)`` for a released BEiT-3 file.
    """
    # Parameter roots of the adapter (everything else is the BEiT-3 part).
    ADAPTER_ROOTS = ('spm.', 'interactions.', 'level_embed', 'up.',
                     'out_norms.')

    def __init__(self,
                 arch: Union[str, dict] = 'base',
                 pretrain_img_size: Union[int, Tuple[int, int]] = 224,
                 window_size: int = 0,
                 global_attn_indexes: Optional[Sequence[int]] = None,
                 drop_path_rate: float = 0.,
                 with_cp: bool = False,
                 frozen_stages: int = -1,
                 interaction_indexes: Optional[Sequence[Sequence[int]]] = None,
                 conv_inplane: int = 64,
                 deform_num_heads: Optional[int] = None,
                 deform_num_points: int = 4,
                 deform_ratio: float = 1.,
                 with_cffn: bool = True,
                 cffn_ratio: float = 0.25,
                 injector_init_values: float = 0.,
                 num_extra_extractors: int = 2,
                 norm_cfg: dict = dict(type='SyncBN', requires_grad=True),
                 init_cfg: Optional[dict] = None):
        super().__init__(
            arch=arch,
            pretrain_img_size=pretrain_img_size,
            window_size=window_size,
            global_attn_indexes=global_attn_indexes,
            drop_path_rate=drop_path_rate,
            with_cp=with_cp,
            frozen_stages=frozen_stages,
            init_cfg=init_cfg)
        D = self.embed_dims
        self.interaction_indexes = self._check_interaction_indexes(
            interaction_indexes)
        self.level_embed = nn.Parameter(torch.zeros(3, D))
        self.spm = SpatialPriorModule(D, conv_inplane, norm_cfg=norm_cfg)
        self.interactions = nn.ModuleList(
            InteractionBlock(
                embed_dims=D,
                num_heads=deform_num_heads or self.arch_settings['num_heads'],
                num_points=deform_num_points,
                deform_ratio=deform_ratio,
                init_values=injector_init_values,
                with_cffn=with_cffn,
                cffn_ratio=cffn_ratio,
                drop_path=drop_path_rate,
                num_extra_extractors=num_extra_extractors
                if i == NUM_STAGES - 1 else 0,
                with_cp=with_cp) for i in range(NUM_STAGES))
        self.up = nn.ConvTranspose2d(D, D, 2, 2)
        self.out_norms = nn.ModuleList(
            build_norm_layer(norm_cfg, D)[1] for _ in range(NUM_STAGES))

    def _check_interaction_indexes(
            self, indexes: Optional[Sequence[Sequence[int]]]
    ) -> List[List[int]]:
        L = self.num_layers
        if indexes is None:
            return default_interaction_indexes(L)
        indexes = [list(stage) for stage in indexes]
        valid = len(indexes) == NUM_STAGES and all(
            len(stage) == 2 and stage[0] <= stage[1] for stage in indexes)
        if valid:
            starts, ends = zip(*indexes)
            valid = (list(starts) == [0] + [e + 1 for e in ends[:-1]]
                     and ends[-1] == L - 1)
        if not valid:
            raise ValueError(
                f'interaction_indexes={indexes} must be {NUM_STAGES} '
                f'[first, last] layer ranges that follow each other and cover '
                f'the {L} layers 0..{L - 1}, e.g. '
                f'{default_interaction_indexes(L)}')
        return indexes

    # ------------------------------------------------------------------ init
    def init_weights(self) -> None:
        """The backbone as :class:`BEiT3` (a released file or the BEiT
        init), then the adapter's own init (as the reference)."""
        super().init_weights()
        for module in (self.spm, self.interactions, self.up):
            module.apply(self._init_adapter_module)
        for m in self.interactions.modules():
            if isinstance(m, MultiScaleDeformableAttention):
                m.init_weights()
        nn.init.normal_(self.level_embed)

    @staticmethod
    def _init_adapter_module(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, nn.modules.batchnorm._BatchNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            fan_out = (m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                       // m.groups)
            nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    # --------------------------------------------------------------- forward
    def _check_images(self, images: Tensor) -> None:
        super()._check_images(images)
        if images.shape[-2] % PRIOR_STRIDE or images.shape[-1] % PRIOR_STRIDE:
            raise ValueError(
                f'BEiT3Adapter needs images whose sides divide by '
                f'{PRIOR_STRIDE} (the spatial prior\'s coarsest stride), got '
                f'shape {tuple(images.shape)}; pad them (data_preprocessor '
                f'size_divisor={PRIOR_STRIDE} or a crop size that divides)')

    def forward(self, images: Tensor) -> Tuple[Tensor, ...]:
        """(B, C, H, W) -> four (B, D, H / s, W / s) maps, s = 4, 8, 16, 32.
        """
        x, grid = self._vision_tokens(images, None)
        c1, *prior = self.spm(images)
        shapes = [tuple(p.shape[-2:]) for p in prior]
        c = torch.cat([
            p.flatten(2).transpose(1, 2) + level
            for p, level in zip(prior, self.level_embed)
        ], dim=1)
        inject_inputs, extract_inputs = deform_inputs(shapes, grid, x.device)

        num_prefix = x.shape[1] - grid[0] * grid[1]
        stage_maps = []
        for block, (first, last) in zip(self.interactions,
                                        self.interaction_indexes):
            prefix, patches = x[:, :num_prefix], x[:, num_prefix:]
            patches = block.injector(patches, c, inject_inputs)
            x = torch.cat((prefix, patches), dim=1)
            for layer in self.encoder.layers[first:last + 1]:
                x, _ = layer(x, None, None, grid)
            patches = x[:, num_prefix:]
            c = block.extract(c, patches, extract_inputs, shapes)
            stage_maps.append(
                patches.transpose(1, 2).reshape(x.shape[0], -1,
                                                *grid).contiguous())

        c2, c3, c4 = split_levels(c, shapes)
        maps = (self.up(c2) + c1, c2, c3, c4)
        return tuple(
            norm(m + F.interpolate(
                s, size=m.shape[-2:], mode='bilinear', align_corners=False))
            for norm, m, s in zip(self.out_norms, maps, stage_maps))

    # ------------------------------------------------------ layer-wise decay
    def get_layer_depth(self, param_name: str,
                        prefix: str = '') -> Tuple[int, int]:
        """As :meth:`BEiT3.get_layer_depth`; the adapter's parameters
        (``spm``, ``interactions``, ``level_embed``, ``up``,
        ``out_norms``) are at the top depth ``L + 1``."""
        num_depths = self.num_layers + 2
        name = param_name[len(prefix):]
        if param_name.startswith(prefix) and name.startswith(
                self.ADAPTER_ROOTS):
            return num_depths - 1, num_depths
        return super().get_layer_depth(param_name, prefix)
