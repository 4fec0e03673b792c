"""Building blocks of ViT-Adapter (`Vision Transformer Adapter for Dense
Predictions <https://arxiv.org/abs/2205.08534>`_).

A convolutional spatial prior (strides 4, 8, 16, 32) talks to the plain
backbone's patch tokens through multi-scale deformable cross-attention: the
injector writes the prior into the tokens before a stage of backbone layers,
the extractor reads the stage's tokens back into the prior. Parameter names
follow the reference implementation (``spm``, ``injector.gamma``,
``extractor.ffn.dwconv``, ...).

Token layouts: the patch tokens are (B, h * w, D) on the backbone's patch
grid; the prior tokens are (B, M, D), the stride 8, 16 and 32 maps
flattened row-major and concatenated (``M = sum(h_l * w_l)``).
"""
from typing import List, NamedTuple, Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmcv.cnn.bricks.drop import DropPath
from mmcv.ops import MultiScaleDeformableAttention
from torch.utils.checkpoint import checkpoint

Tensor = torch.Tensor
Shapes = Sequence[Tuple[int, int]]

# The reference uses LayerNorm(eps=1e-6) in its injectors and extractors.
ADAPTER_LN_EPS = 1e-6


class DeformInputs(NamedTuple):
    """Where the queries of one deformable cross-attention look.

    Attributes:
        reference_points: (1, Q, 1, 2) normalised (x, y) of each query,
            shared by every level.
        spatial_shapes: (L, 2) long, (h, w) of each value level.
        level_start_index: (L, ) long, offset of each level in the values.
    """
    reference_points: Tensor
    spatial_shapes: Tensor
    level_start_index: Tensor


def reference_points(shapes: Shapes, device: torch.device) -> Tensor:
    """Normalised pixel centres of the grids in ``shapes``, row-major and
    concatenated: (1, sum(h * w), 1, 2) as (x, y) in (0, 1)."""
    points = []
    for h, w in shapes:
        ys, xs = torch.meshgrid(
            (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h,
            (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w,
            indexing='ij')
        points.append(torch.stack((xs.flatten(), ys.flatten()), -1))
    return torch.cat(points)[None, :, None]


def _value_levels(shapes: Shapes, device: torch.device
                  ) -> Tuple[Tensor, Tensor]:
    spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=device)
    sizes = spatial_shapes.prod(1)
    starts = torch.cat((sizes.new_zeros(1), sizes.cumsum(0)[:-1]))
    return spatial_shapes, starts


def deform_inputs(prior_shapes: Shapes, grid: Tuple[int, int],
                  device: torch.device) -> Tuple[DeformInputs, DeformInputs]:
    """The sampling inputs of the injector and of the extractor.

    Args:
        prior_shapes: (h, w) of the stride 8, 16 and 32 prior maps.
        grid: (h, w) of the backbone's patch grid.

    Returns:
        The injector's (queries: patch tokens, values: the prior levels) and
        the extractor's (queries: prior tokens, values: the patch grid).
    """
    inject = DeformInputs(
        reference_points([grid], device), *_value_levels(prior_shapes, device))
    extract = DeformInputs(
        reference_points(prior_shapes, device), *_value_levels([grid], device))
    return inject, extract


class SpatialPriorModule(nn.Module):
    """Convolutional stem giving the spatial prior at strides 4 to 32.

    Args:
        embed_dims (int): D, the channels of every output.
        inplanes (int): C, the stem width; the strides 8, 16 and 32 stages
            have 2C, 4C and 4C channels before their 1x1 projection.
        in_channels (int): image channels.
        norm_cfg (dict): norm of the conv stages (SyncBN in the reference).
    """

    def __init__(self,
                 embed_dims: int,
                 inplanes: int = 64,
                 in_channels: int = 3,
                 norm_cfg: dict = dict(type='SyncBN', requires_grad=True)):
        super().__init__()

        def conv(cin: int, cout: int, stride: int) -> ConvModule:
            return ConvModule(cin, cout, 3, stride, 1, bias=False,
                              norm_cfg=norm_cfg, act_cfg=dict(type='ReLU'))

        self.stem = nn.Sequential(
            conv(in_channels, inplanes, 2), conv(inplanes, inplanes, 1),
            conv(inplanes, inplanes, 1), nn.MaxPool2d(3, 2, 1))
        self.conv2 = conv(inplanes, 2 * inplanes, 2)
        self.conv3 = conv(2 * inplanes, 4 * inplanes, 2)
        self.conv4 = conv(4 * inplanes, 4 * inplanes, 2)
        self.fc1, self.fc2, self.fc3, self.fc4 = (
            nn.Conv2d(c, embed_dims, 1)
            for c in (inplanes, 2 * inplanes, 4 * inplanes, 4 * inplanes))

    def forward(self, images: Tensor) -> List[Tensor]:
        """(B, C, H, W) -> four (B, D, H / s, W / s) maps, s = 4, 8, 16, 32.
        """
        c1 = self.stem(images)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        c4 = self.conv4(c3)
        return [fc(c) for fc, c in zip((self.fc1, self.fc2, self.fc3,
                                        self.fc4), (c1, c2, c3, c4))]


class DWConv(nn.Module):
    """3x3 depthwise convolution of each level of a token sequence."""

    def __init__(self, channels: int):
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels)

    def forward(self, x: Tensor, shapes: Shapes) -> Tensor:
        """(B, sum(h * w), C) with the levels of ``shapes`` -> same shape."""
        B, _, C = x.shape
        levels = x.split([h * w for h, w in shapes], dim=1)
        return torch.cat([
            self.dwconv(t.transpose(1, 2).reshape(B, C, h, w)).flatten(2)
            .transpose(1, 2) for t, (h, w) in zip(levels, shapes)
        ], dim=1)


class ConvFFN(nn.Module):
    """fc1 -> depthwise 3x3 per level -> GELU -> fc2.

    Args:
        embed_dims (int): D.
        hidden_dims (int): the hidden width (``cffn_ratio * D``).
        drop (float): dropout after the activation and after fc2.
    """

    def __init__(self, embed_dims: int, hidden_dims: int, drop: float = 0.):
        super().__init__()
        self.fc1 = nn.Linear(embed_dims, hidden_dims)
        self.dwconv = DWConv(hidden_dims)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dims, embed_dims)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor, shapes: Shapes) -> Tensor:
        """(B, sum(h * w), D) -> (B, sum(h * w), D)."""
        x = self.drop(self.act(self.dwconv(self.fc1(x), shapes)))
        return self.drop(self.fc2(x))


class DeformCrossAttention(nn.Module):
    """LayerNorm'ed queries attend to LayerNorm'ed features with mmcv's
    ``MultiScaleDeformableAttention``; the output is the attention alone.

    mmcv's module adds its ``identity`` (by default the query) to what it
    returns; the reference's ``MSDeformAttn`` does not. A zero identity is
    passed, so the callers add their own residual exactly once.

    Args:
        embed_dims (int): D.
        num_heads (int): deformable attention heads.
        num_points (int): sampling points per head and level.
        num_levels (int): levels of the features.
        deform_ratio (float): width of the value projection over D.
        with_cp (bool): recompute the subclass's forward in the backward
            pass instead of storing its activations.
    """

    def __init__(self, embed_dims: int, num_heads: int, num_points: int,
                 num_levels: int, deform_ratio: float, with_cp: bool):
        super().__init__()
        self.query_norm = nn.LayerNorm(embed_dims, eps=ADAPTER_LN_EPS)
        self.feat_norm = nn.LayerNorm(embed_dims, eps=ADAPTER_LN_EPS)
        self.attn = MultiScaleDeformableAttention(
            embed_dims=embed_dims,
            num_heads=num_heads,
            num_levels=num_levels,
            num_points=num_points,
            dropout=0.,
            batch_first=True,
            value_proj_ratio=deform_ratio)
        self.with_cp = with_cp

    def attend(self, query: Tensor, feat: Tensor,
               inputs: DeformInputs) -> Tensor:
        """(B, Q, D) queries, (B, V, D) features -> (B, Q, D)."""
        return self.attn(
            self.query_norm(query),
            value=self.feat_norm(feat),
            identity=query.new_zeros(()),
            reference_points=inputs.reference_points,
            spatial_shapes=inputs.spatial_shapes,
            level_start_index=inputs.level_start_index)

    def _maybe_checkpoint(self, fn, *args) -> Tensor:
        if self.with_cp and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)


class Injector(DeformCrossAttention):
    """Patch tokens += gamma * deformable attention to the prior tokens.

    ``gamma`` (D, ) starts at ``init_values``: 0 makes the injector the
    identity, so the backbone starts as it was pretrained.
    """

    def __init__(self, embed_dims: int, num_heads: int, num_points: int,
                 deform_ratio: float, init_values: float, with_cp: bool):
        super().__init__(embed_dims, num_heads, num_points, 3, deform_ratio,
                         with_cp)
        self.gamma = nn.Parameter(torch.full((embed_dims, ), init_values))

    def _forward(self, query: Tensor, feat: Tensor,
                 inputs: DeformInputs) -> Tensor:
        return query + self.gamma * self.attend(query, feat, inputs)

    def forward(self, query: Tensor, feat: Tensor,
                inputs: DeformInputs) -> Tensor:
        """(B, h * w, D) patch tokens, (B, M, D) prior -> (B, h * w, D)."""
        return self._maybe_checkpoint(self._forward, query, feat, inputs)


class Extractor(DeformCrossAttention):
    """Prior tokens += deformable attention to the patch tokens, then
    += ConvFFN (with stochastic depth)."""

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 num_points: int,
                 deform_ratio: float,
                 with_cffn: bool = True,
                 cffn_ratio: float = 0.25,
                 drop: float = 0.,
                 drop_path: float = 0.,
                 with_cp: bool = False):
        super().__init__(embed_dims, num_heads, num_points, 1, deform_ratio,
                         with_cp)
        self.ffn = self.ffn_norm = None
        if with_cffn:
            self.ffn = ConvFFN(embed_dims, int(embed_dims * cffn_ratio), drop)
            self.ffn_norm = nn.LayerNorm(embed_dims, eps=ADAPTER_LN_EPS)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else \
            nn.Identity()

    def _forward(self, query: Tensor, feat: Tensor, inputs: DeformInputs,
                 shapes: Shapes) -> Tensor:
        query = query + self.attend(query, feat, inputs)
        if self.ffn is not None:
            query = query + self.drop_path(
                self.ffn(self.ffn_norm(query), shapes))
        return query

    def forward(self, query: Tensor, feat: Tensor, inputs: DeformInputs,
                shapes: Shapes) -> Tensor:
        """(B, M, D) prior tokens on the levels ``shapes``, (B, h * w, D)
        patch tokens -> (B, M, D)."""
        return self._maybe_checkpoint(self._forward, query, feat, inputs,
                                      shapes)


class InteractionBlock(nn.Module):
    """The adapter's side of one interaction stage: ``injector`` runs
    before the stage's backbone layers, :meth:`extract` after them.

    Args:
        embed_dims, num_heads, num_points, deform_ratio, with_cffn,
            cffn_ratio, drop, drop_path, with_cp: see :class:`Extractor`.
        init_values (float): the injector's initial ``gamma``.
        num_extra_extractors (int): extractors run after the first one
            (the reference uses two in the last stage).
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 num_points: int = 4,
                 deform_ratio: float = 1.,
                 init_values: float = 0.,
                 with_cffn: bool = True,
                 cffn_ratio: float = 0.25,
                 drop: float = 0.,
                 drop_path: float = 0.,
                 num_extra_extractors: int = 0,
                 with_cp: bool = False):
        super().__init__()
        self.injector = Injector(embed_dims, num_heads, num_points,
                                 deform_ratio, init_values, with_cp)

        def extractor() -> Extractor:
            return Extractor(embed_dims, num_heads, num_points, deform_ratio,
                             with_cffn, cffn_ratio, drop, drop_path, with_cp)

        self.extractor = extractor()
        self.extra_extractors = nn.ModuleList(
            extractor() for _ in range(num_extra_extractors))

    def extract(self, c: Tensor, x: Tensor, inputs: DeformInputs,
                shapes: Shapes) -> Tensor:
        """Prior tokens (B, M, D) updated from the patch tokens."""
        for extractor in [self.extractor, *self.extra_extractors]:
            c = extractor(c, x, inputs, shapes)
        return c


def split_levels(c: Tensor, shapes: Shapes) -> List[Tensor]:
    """(B, sum(h * w), D) prior tokens -> one contiguous (B, D, h, w) map
    per level (mmcv's RoIAlign misreads a channels-last one)."""
    B, _, D = c.shape
    return [
        t.transpose(1, 2).reshape(B, D, h, w).contiguous()
        for t, (h, w) in zip(c.split([h * w for h, w in shapes], dim=1),
                             shapes)
    ]


__all__ = [
    'DeformInputs', 'reference_points', 'deform_inputs', 'SpatialPriorModule',
    'ConvFFN', 'DWConv', 'DeformCrossAttention', 'Injector', 'Extractor',
    'InteractionBlock', 'split_levels'
]
