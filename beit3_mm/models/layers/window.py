"""Non-overlapping window attention over a patch grid (ViTDet style)."""
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F

from .attention import attention

Tensor = torch.Tensor


def _partition(x: Tensor, grid: Tuple[int, int], window_size: int) -> Tensor:
    """(B, H, h * w, C) -> (B * nW, H, ws * ws, C), zero-padding the grid to
    a multiple of the window."""
    B, H, _, C = x.shape
    h, w = grid
    ws = window_size
    x = x.view(B, H, h, w, C)
    x = F.pad(x, (0, 0, 0, -w % ws, 0, -h % ws))
    nh, nw = x.shape[2] // ws, x.shape[3] // ws
    x = x.view(B, H, nh, ws, nw, ws, C).permute(0, 2, 4, 1, 3, 5, 6)
    return x.reshape(B * nh * nw, H, ws * ws, C)


def _unpartition(x: Tensor, batch: int, grid: Tuple[int, int],
                 window_size: int) -> Tensor:
    """Inverse of :func:`_partition`: (B * nW, H, ws * ws, C) ->
    (B, H, h * w, C), dropping the padding."""
    h, w = grid
    ws = window_size
    nh, nw = -(-h // ws), -(-w // ws)
    _, H, _, C = x.shape
    x = x.view(batch, nh, nw, H, ws, ws, C).permute(0, 3, 1, 4, 2, 5, 6)
    x = x.reshape(batch, H, nh * ws, nw * ws, C)[:, :, :h, :w]
    return x.reshape(batch, H, h * w, C)


def _padding_keep_mask(grid: Tuple[int, int], window_size: int, batch: int,
                       device: torch.device) -> Optional[Tensor]:
    """(B * nW, 1, 1, ws * ws) bool, False at padded keys; None without
    padding."""
    h, w = grid
    ws = window_size
    if h % ws == 0 and w % ws == 0:
        return None
    nh, nw = -(-h // ws), -(-w // ws)
    valid = torch.zeros(nh * ws, nw * ws, dtype=torch.bool, device=device)
    valid[:h, :w] = True
    valid = valid.view(nh, ws, nw, ws).permute(0, 2, 1, 3)
    return valid.reshape(1, nh * nw, 1, 1, ws * ws).expand(
        batch, -1, -1, -1, -1).reshape(batch * nh * nw, 1, 1, ws * ws)


def window_attention(q: Tensor,
                     k: Tensor,
                     v: Tensor,
                     grid: Tuple[int, int],
                     window_size: int,
                     num_prefix: int = 0,
                     rel_pos: Optional[Callable[[Tensor, Tuple[int, int]],
                                                Tensor]] = None) -> Tensor:
    """Attention of the patch tokens within their window.

    Args:
        q, k, v: (B, H, P + h * w, C): ``P = num_prefix`` leading tokens
            (CLS) then the patch grid, row-major.
        grid: (h, w).
        window_size: ws; the grid is zero-padded to a multiple of ws and
            the padded keys are masked out.
        num_prefix: P. The prefix tokens attend to the prefix tokens only.
        rel_pos: maps the (B * nW, H, ws * ws, C) window queries and the
            window grid (ws, ws) to an additive bias on their logits
            (e.g. :class:`DecomposedRelPos`).

    Returns:
        (B, H, P + h * w, C).
    """
    B = q.shape[0]
    P = num_prefix
    ws = window_size
    q_w, k_w, v_w = (_partition(t[:, :, P:], grid, ws) for t in (q, k, v))
    mask = _padding_keep_mask(grid, ws, B, q.device)
    if rel_pos is not None:
        bias = rel_pos(q_w, (ws, ws))
        mask = bias if mask is None else bias.masked_fill(
            ~mask, float('-inf'))
    out = attention(q_w, k_w, v_w, mask)
    out = _unpartition(out, B, grid, window_size)
    if P:
        prefix = attention(q[:, :, :P], k[:, :, :P], v[:, :, :P])
        out = torch.cat((prefix, out), dim=2)
    return out
