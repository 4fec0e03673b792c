"""Scaled dot-product attention, with a faster path under CPU bf16
autocast."""
from typing import Optional

import torch
import torch.nn.functional as F

from .norm import autocast_dtype

Tensor = torch.Tensor

# Up to this many keys, CPU bf16 attention runs as two bf16 matrix products
# (the score matrix costs B * H * N * T * 2 bytes); beyond it, SDPA's flash
# kernel (memory linear in T) is about as fast.
MAX_KEYS_UNFUSED = 1024


def attention(q: Tensor,
              k: Tensor,
              v: Tensor,
              attn_mask: Optional[Tensor] = None) -> Tensor:
    """``softmax(q k^T / sqrt(C) + mask) v``, as
    ``F.scaled_dot_product_attention``.

    Under CPU bf16 autocast with at most :data:`MAX_KEYS_UNFUSED` keys, the
    scores and the weighted sum run as bf16 matrix products (the scale
    applied to the scores' float32 accumulator) with a bf16 softmax (fp32
    internally), as the reference computes it: PyTorch's CPU flash kernel
    is slower in bf16 than in float32 (at 197 tokens, 1.7x this path
    forward, 3.4x backward). Without autograd the softmax runs in place. A
    query whose keys are all masked gets NaN here, as in the reference, and
    zeros from SDPA. Everywhere else (float32, other devices) this is SDPA.

    Args:
        q: (B, H, N, C) queries.
        k, v: (B, H, T, C) keys and values.
        attn_mask: bool (True where attention is allowed) or an additive
            float bias, broadcastable to (B, H, N, T); None for full
            attention.

    Returns:
        (B, H, N, C).
    """
    if (q.device.type != 'cpu' or k.shape[-2] > MAX_KEYS_UNFUSED
            or autocast_dtype('cpu') != torch.bfloat16):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    B, H, N, C = q.shape
    T = k.shape[-2]
    # (B * H)-batched products: views of contiguous q and k, one copy of
    # strided ones (as matmul would make)
    scores = torch.baddbmm(
        q.new_empty(()), q.reshape(B * H, N, C),
        k.reshape(B * H, T, C).transpose(1, 2), beta=0,
        alpha=C**-0.5).view(B, H, N, T)
    if attn_mask is not None:
        scores = (scores.masked_fill_(~attn_mask, float('-inf'))
                  if attn_mask.dtype == torch.bool else scores + attn_mask)
    if torch.is_grad_enabled():
        return scores.softmax(dim=-1) @ v
    return torch.softmax(scores, dim=-1, out=scores) @ v
