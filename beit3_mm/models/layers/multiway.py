"""The multiway transformer layer of BEiT-3.

Every layer holds a vision expert ``A`` and a language expert ``B`` for each
projection, norm and FFN; only the attention softmax is shared, over the whole
concatenated sequence. The image tokens and the text tokens travel as two
separate streams ``(x_v, x_t)`` (either may be ``None``), so the experts run
on their own tokens without the split/concatenate around every projection that
the reference does; the streams meet only in attention.
"""
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks.drop import DropPath
from torch.utils.checkpoint import checkpoint

from .attention import attention
from .cpu_bf16 import (AutocastLinear, BF16WeightCacheOwner, bf16_inference,
                       cached_bf16, fused_linear)
from .norm import AutocastLayerNorm, autocast_dtype
from .rel_pos import DecomposedRelPos
from .window import window_attention

Tensor = torch.Tensor
Streams = Tuple[Optional[Tensor], Optional[Tensor]]

LN_EPS = 1e-5


def _layer_norm(dims: int) -> nn.LayerNorm:
    return AutocastLayerNorm(dims, eps=LN_EPS)


class Multiway(nn.Module):
    """A vision expert ``A`` and a language expert ``B``.

    ``B`` is ``None`` in a vision-only model: it is then neither allocated
    nor seen by DDP.
    """

    def __init__(self, vision: nn.Module, language: Optional[nn.Module]):
        super().__init__()
        self.A = vision
        self.B = language

    @classmethod
    def pair(cls, build: Callable[[], nn.Module],
             with_language: bool = True) -> 'Multiway':
        """Two experts of the same form built by ``build``."""
        return cls(build(), build() if with_language else None)

    def forward(self, x_v: Optional[Tensor],
                x_t: Optional[Tensor]) -> Streams:
        return (None if x_v is None else self.A(x_v),
                None if x_t is None else self.B(x_t))


class LayerKV:
    """Cached keys and values of one attention layer, (B, H, T, C) each.

    :meth:`extend` appends the keys and values of new tokens and returns
    everything cached, which the new tokens attend to.
    """

    def __init__(self):
        self.key: Optional[Tensor] = None
        self.value: Optional[Tensor] = None

    def extend(self, key: Tensor, value: Tensor) -> Tuple[Tensor, Tensor]:
        """Append (B, H, M, C) keys and values; return all (B, H, T + M, C).
        """
        if self.key is not None:
            key = torch.cat((self.key, key), dim=2)
            value = torch.cat((self.value, value), dim=2)
        self.key, self.value = key, value
        return key, value


class KVCache:
    """Keys and values of every layer for incremental decoding.

    ``layers[i]`` (a :class:`LayerKV`) holds layer ``i``'s keys and values,
    (B, H, T, C) each, of the T tokens encoded so far: ``num_vision`` image
    tokens (CLS first) then ``num_text`` text tokens, in the order they were
    fed. ``BEiT3.encode(..., cache=cache)`` fills an empty cache and extends
    a filled one; see there for the attention rule.

    Args:
        num_layers (int): layers of the backbone.
    """

    def __init__(self, num_layers: int):
        self.layers: List[LayerKV] = [LayerKV() for _ in range(num_layers)]
        self.num_vision = 0

    def __len__(self) -> int:
        """T, the tokens cached."""
        key = self.layers[0].key
        return 0 if key is None else key.shape[2]

    @property
    def num_text(self) -> int:
        return len(self) - self.num_vision

    def reorder(self, index: Tensor) -> None:
        """Keep the rows ``index`` (B',) of the batch, in that order: e.g.
        ``arange(B).repeat_interleave(K)`` expands each sample to K beams,
        beam indices follow the beams that survive a search step."""
        for kv in self.layers:
            kv.key = kv.key.index_select(0, index)
            kv.value = kv.value.index_select(0, index)

    def drop_last(self, num: int = 1) -> None:
        """Forget the last ``num`` text tokens (e.g. a ``<mask>`` slot
        whose prediction has been read)."""
        if not 0 <= num <= self.num_text:
            raise ValueError(f'cannot drop {num} of the {self.num_text} '
                             f'cached text tokens')
        end = len(self) - num
        for kv in self.layers:
            kv.key, kv.value = kv.key[:, :, :end], kv.value[:, :, :end]


class FeedForward(nn.Module):
    """fc1 -> GELU (exact, computed in float32) -> sub-LayerNorm -> fc2.

    In CPU bf16 inference the GELU runs inside fc1's product, on its
    float32 accumulator (see :mod:`.cpu_bf16`).
    """

    def __init__(self, embed_dims: int, feedforward_channels: int):
        super().__init__()
        self.fc1 = AutocastLinear(embed_dims, feedforward_channels)
        self.ffn_layernorm = _layer_norm(feedforward_channels)
        self.fc2 = AutocastLinear(feedforward_channels, embed_dims)

    def forward(self, x: Tensor) -> Tensor:
        if bf16_inference(x):
            x = fused_linear(x, *self.fc1.bf16_weights(), gelu=True)
        else:
            x = self.fc1(x)
            # The reference upcasts to float32 around GELU. The float32
            # and bfloat16 kernels compute in float32 already
            # (bit-identical result), so only float16 pays for the two
            # extra copies.
            x = F.gelu(x.float()).type_as(x) if x.dtype == torch.float16 \
                else F.gelu(x)
        return self.fc2(self.ffn_layernorm(x))


class MultiwayAttention(BF16WeightCacheOwner):
    """Multi-head attention with per-modality projections and one softmax.

    Args:
        embed_dims (int): D.
        num_heads (int): H; D must divide by it.
        with_language (bool): build the language experts.
        window_size (int): 0 for global attention; else image-only inputs
            attend within non-overlapping windows of this many patches
            (see :func:`window_attention`), which needs the patch grid.
            Defaults to 0.
        rel_pos_size (tuple, optional): (h, w) grid of the relative
            position terms of the patch tokens (:class:`DecomposedRelPos`;
            image-only inputs, needs the grid); None for none. Defaults to
            None.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 with_language: bool = True,
                 window_size: int = 0,
                 rel_pos_size: Optional[Tuple[int, int]] = None):
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims={embed_dims} is not divisible by '
                             f'num_heads={num_heads}')
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.window_size = window_size
        self.rel_pos = (None if rel_pos_size is None else DecomposedRelPos(
            rel_pos_size, self.head_dims))
        linear = lambda: AutocastLinear(embed_dims, embed_dims)  # noqa: E731
        self.k_proj = Multiway.pair(linear, with_language)
        self.v_proj = Multiway.pair(linear, with_language)
        self.q_proj = Multiway.pair(linear, with_language)
        self.out_proj = Multiway.pair(linear, with_language)
        self.inner_attn_ln = Multiway.pair(lambda: _layer_norm(embed_dims),
                                           with_language)

    def _heads(self, x: Optional[Tensor]) -> Optional[Tensor]:
        if x is None:
            return None
        B, N, _ = x.shape
        return x.view(B, N, self.num_heads, self.head_dims).transpose(1, 2)

    def _qkv(self, x: Optional[Tensor], expert: str) -> Tuple[Tensor, ...]:
        """(B, H, N, C) queries, keys and values of one stream.

        Under autocast the three projections of the expert run as one
        matrix product (one weight cast, one GEMM); in full precision they
        run one by one, as the reference does, so that float32 results do
        not change. In CPU bf16 inference the stacked bf16 weight is cached
        (see :mod:`.cpu_bf16`) and q, k and v come out contiguous, each
        ready for the attention's batched products.
        """
        if x is None:
            return None, None, None
        projs = [getattr(p, expert) for p in (self.q_proj, self.k_proj,
                                                self.v_proj)]
        if bf16_inference(x):
            qkv = fused_linear(x, *cached_bf16(self, expert, projs))
            B, N, _ = qkv.shape
            return qkv.view(B, N, 3, self.num_heads, self.head_dims).permute(
                2, 0, 3, 1, 4).contiguous().unbind(0)
        if autocast_dtype(x.device.type) is None:
            return tuple(self._heads(p(x)) for p in projs)
        weight = torch.cat([p.weight for p in projs])
        bias = torch.cat([p.bias for p in projs])
        qkv = F.linear(x, weight, bias)
        B, N, _ = qkv.shape
        # unbind before transposing: the backward stacks the three
        # gradients straight into the (B, N, 3, H, C) layout, one copy
        qkv = qkv.view(B, N, 3, self.num_heads, self.head_dims).unbind(2)
        return tuple(t.transpose(1, 2) for t in qkv)

    @staticmethod
    def _join(x_v: Optional[Tensor], x_t: Optional[Tensor]) -> Tensor:
        if x_v is None or x_t is None:
            return x_t if x_v is None else x_v
        return torch.cat((x_v, x_t), dim=2)

    def forward(self,
                x_v: Optional[Tensor],
                x_t: Optional[Tensor],
                attn_mask: Optional[Tensor] = None,
                grid: Optional[Tuple[int, int]] = None,
                kv: Optional[LayerKV] = None) -> Streams:
        """Attend over the concatenation [image tokens, text tokens].

        Args:
            x_v, x_t: (B, N, D) image and (B, M, D) text tokens, or None.
            attn_mask: bool, True where attention is allowed, broadcastable
                to (B, H, N + M, T + N + M) (T cached tokens); None for
                full attention.
            grid: (h, w) patch grid of ``x_v``, whose leading
                ``N - h * w`` tokens are CLS; needed for window attention.
            kv: this layer's cache: the new keys and values are appended
                and the tokens attend to all of them.
        """
        if self.window_size or self.rel_pos is not None:
            if (x_t is not None or grid is None or attn_mask is not None
                    or kv is not None):
                raise ValueError('window attention and relative position '
                                 'terms take image tokens and their grid '
                                 'only')
            num_prefix = x_v.shape[1] - grid[0] * grid[1]
        q, k, v = (self._join(*s) for s in zip(
            self._qkv(x_v, 'A'), self._qkv(x_t, 'B')))
        if kv is not None:
            k, v = kv.extend(k, v)
        if self.window_size:
            out = window_attention(q, k, v, grid, self.window_size,
                                   num_prefix, self.rel_pos)
        else:
            if self.rel_pos is not None:
                attn_mask = self.rel_pos(q[:, :, num_prefix:], grid,
                                         num_prefix)
            out = attention(q, k, v, attn_mask)
        B, H, T, C = out.shape
        out = out.transpose(1, 2).reshape(B, T, H * C)
        n_v = 0 if x_v is None else x_v.shape[1]
        o_v = out[:, :n_v] if x_v is not None else None
        o_t = out[:, n_v:] if x_t is not None else None
        return self.out_proj(*self.inner_attn_ln(o_v, o_t))


def _residual(x: Streams, y: Streams, drop_path: nn.Module) -> Streams:
    return tuple(None if a is None else a + drop_path(b)
                 for a, b in zip(x, y))


class MultiwayTransformerLayer(nn.Module):
    """Pre-LN BEiT-3 layer with Magneto sub-LayerNorms.

    Parameter names follow the released checkpoints:
    ``self_attn.*``, ``self_attn_layer_norm.{A,B}``, ``ffn.{A,B}.*`` and
    ``final_layer_norm.{A,B}`` (the norm before the FFN). ``window_size``
    and ``rel_pos_size`` go to :class:`MultiwayAttention`.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 feedforward_channels: int,
                 drop_path_rate: float = 0.,
                 with_language: bool = True,
                 with_cp: bool = False,
                 window_size: int = 0,
                 rel_pos_size: Optional[Tuple[int, int]] = None):
        super().__init__()
        self.self_attn = MultiwayAttention(embed_dims, num_heads,
                                           with_language, window_size,
                                           rel_pos_size)
        self.self_attn_layer_norm = Multiway.pair(
            lambda: _layer_norm(embed_dims), with_language)
        self.ffn = Multiway.pair(
            lambda: FeedForward(embed_dims, feedforward_channels),
            with_language)
        self.final_layer_norm = Multiway.pair(
            lambda: _layer_norm(embed_dims), with_language)
        self.drop_path = (DropPath(drop_path_rate)
                          if drop_path_rate > 0 else nn.Identity())
        self.with_cp = with_cp

    def _forward(self, x_v: Optional[Tensor], x_t: Optional[Tensor],
                 attn_mask: Optional[Tensor],
                 grid: Optional[Tuple[int, int]],
                 kv: Optional[LayerKV] = None) -> Streams:
        x = (x_v, x_t)
        h = self.self_attn(*self.self_attn_layer_norm(*x), attn_mask, grid,
                           kv)
        x = _residual(x, h, self.drop_path)
        h = self.ffn(*self.final_layer_norm(*x))
        return _residual(x, h, self.drop_path)

    def forward(self,
                x_v: Optional[Tensor],
                x_t: Optional[Tensor],
                attn_mask: Optional[Tensor] = None,
                grid: Optional[Tuple[int, int]] = None,
                kv: Optional[LayerKV] = None) -> Streams:
        """(x_v, x_t) -> (x_v, x_t); see :meth:`MultiwayAttention.forward`.
        """
        # a cache is filled as a side effect: no recomputation for it
        if self.with_cp and torch.is_grad_enabled() and kv is None:
            return checkpoint(self._forward, x_v, x_t, attn_mask, grid,
                              use_reentrant=False)
        return self._forward(x_v, x_t, attn_mask, grid, kv)
