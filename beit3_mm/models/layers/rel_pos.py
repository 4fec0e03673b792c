"""Decomposed relative position terms of attention over a patch grid, as in
ViTDet (from MViTv2).

The logit of query patch (i, j) for key patch (k, l) gains
``q_ij . Rh[i - k] + q_ij . Rw[j - l]`` with the unscaled query ``q`` and two
learned tables indexed by the row and the column offset.
"""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

Tensor = torch.Tensor


def resize_rel_pos(table: Tensor, length: int) -> Tensor:
    """Linearly resize a (L, C) table of offsets to (length, C)."""
    if table.shape[0] == length:
        return table
    return F.interpolate(
        table.t()[None], size=length, mode='linear')[0].t()


def _offsets(table: Tensor, size: int) -> Tensor:
    """(size, size, C): the entry for query row/column i and key k, i.e.
    ``table[i - k + size - 1]`` after resizing ``table`` to 2 * size - 1."""
    table = resize_rel_pos(table, 2 * size - 1)
    idx = torch.arange(size, device=table.device)
    return table[idx[:, None] - idx[None, :] + size - 1]


def decomposed_rel_pos_bias(q: Tensor,
                            grid: Tuple[int, int],
                            table_h: Tensor,
                            table_w: Tensor,
                            num_prefix: int = 0) -> Tensor:
    """The additive attention bias of the patch tokens on one grid.

    Args:
        q: (B, H, h * w, C) unscaled patch queries, row-major over the grid.
        grid: (h, w).
        table_h, table_w: (Lh, C) and (Lw, C) tables, resized to
            2 * h - 1 and 2 * w - 1 offsets when they differ.
        num_prefix: P leading tokens (CLS) of the sequence the bias is for,
            whose rows and columns get no terms.

    Returns:
        (B, H, P + h * w, P + h * w).
    """
    B, H, N, C = q.shape
    h, w = grid
    P = num_prefix
    q = q.reshape(B, H, h, w, C)
    rel_h = torch.einsum('bnhwc,hkc->bnhwk', q,
                         _offsets(table_h, h).to(q.dtype))
    rel_w = torch.einsum('bnhwc,wkc->bnhwk', q,
                         _offsets(table_w, w).to(q.dtype))
    if not P:
        return (rel_h[..., :, None] + rel_w[..., None, :]).reshape(
            B, H, N, N)
    # Written in place into the patch block of the full bias: one N x N
    # tensor per head, not a second one for padding in the prefix.
    bias = q.new_zeros(B, H, P + N, P + N)
    patches = bias[:, :, P:, P:].view(B, H, h, w, h, w)
    patches.copy_(rel_h[..., :, None].expand_as(patches))
    patches.add_(rel_w[..., None, :])
    return bias


class DecomposedRelPos(nn.Module):
    """Row and column offset tables for attention on a grid of ``size``.

    The tables start at zero (ViTDet's default), so a model that gains them
    computes what it did before until they are trained. A grid other than
    ``size`` at run time resizes the tables linearly.

    Args:
        size (tuple): (h, w) grid the tables are made for.
        head_dims (int): C.
    """

    def __init__(self, size: Tuple[int, int], head_dims: int):
        super().__init__()
        self.h = nn.Parameter(torch.zeros(2 * size[0] - 1, head_dims))
        self.w = nn.Parameter(torch.zeros(2 * size[1] - 1, head_dims))

    def forward(self,
                q: Tensor,
                grid: Tuple[int, int],
                num_prefix: int = 0) -> Tensor:
        """(B, H, h * w, C) patch queries -> (B, H, P + h * w, P + h * w)
        bias; see :func:`decomposed_rel_pos_bias`."""
        return decomposed_rel_pos_bias(q, grid, self.h, self.w, num_prefix)
