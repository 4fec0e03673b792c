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
    scores and the weighted sum run as bf16 matrix products with a bf16
    softmax (fp32 internally), as the reference computes it: PyTorch's CPU
    flash kernel is slower in bf16 than in float32 (at 197 tokens, 1.7x
    this path forward, 3.4x backward). A query whose keys are all masked
    gets NaN here, as in the reference, and zeros from SDPA. Everywhere
    else (float32, other devices) this is SDPA.

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
    scores = (q * q.shape[-1]**-0.5) @ k.transpose(-2, -1)
    if attn_mask is not None:
        scores = (scores.masked_fill(~attn_mask, float('-inf'))
                  if attn_mask.dtype == torch.bool else scores + attn_mask)
    return scores.softmax(dim=-1) @ v
