"""Patch embedding and position tables of BEiT-3."""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

# Both position tables of the released models start at row 2: rows 0 and 1
# are never used, row 2 of the vision table is CLS, rows 3... the patches.
POS_OFFSET = 2
# Rows in front of the patch grid in the vision table (2 unused + CLS).
NUM_VISION_EXTRA_ROWS = POS_OFFSET + 1


class VisionEmbedding(nn.Module):
    """Non-overlapping patch projection with a mask token and a CLS token.

    Args:
        embed_dims (int): D.
        patch_size (int): P, kernel and stride of the projection.
        in_channels (int): image channels.
    """

    def __init__(self, embed_dims: int, patch_size: int,
                 in_channels: int = 3):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, embed_dims, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dims))

    def forward(self, images: torch.Tensor,
                image_mask: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """(B, C, H, W) images -> (B, 1 + h * w, D) tokens and (h, w).

        ``image_mask`` (B, h * w) is True for the patches replaced by the
        mask token.
        """
        x = self.proj(images)
        grid = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)
        if image_mask is not None:
            w = image_mask.unsqueeze(-1).type_as(x)
            x = x * (1 - w) + self.mask_token * w
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        return torch.cat((cls, x), dim=1), grid


def vision_table_grid(num_rows: int) -> Tuple[int, int]:
    """The square patch grid of a vision position table of ``num_rows``."""
    side = round((num_rows - NUM_VISION_EXTRA_ROWS)**0.5)
    if side * side != num_rows - NUM_VISION_EXTRA_ROWS or side < 1:
        raise ValueError(
            f'a vision position table of {num_rows} rows does not hold a '
            f'square patch grid ({NUM_VISION_EXTRA_ROWS} extra rows + h*w)')
    return side, side


def resize_vision_pos_table(table: torch.Tensor, src_grid: Tuple[int, int],
                            dst_grid: Tuple[int, int]) -> torch.Tensor:
    """Resize a vision position table the way the official loader does.

    The first 3 rows are kept; the grid rows are resized with bicubic
    interpolation (``align_corners=False``, no antialias) and flattened
    row-major.

    Args:
        table: (3 + h * w, D) with (h, w) = ``src_grid``.
        src_grid, dst_grid: (rows, cols) of the patch grids.

    Returns:
        (3 + h' * w', D) with (h', w') = ``dst_grid``.
    """
    if tuple(src_grid) == tuple(dst_grid):
        return table
    extra, grid = table[:NUM_VISION_EXTRA_ROWS], table[NUM_VISION_EXTRA_ROWS:]
    dims = table.shape[-1]
    grid = grid.reshape(1, *src_grid, dims).permute(0, 3, 1, 2)
    grid = F.interpolate(
        grid.float(), size=tuple(dst_grid), mode='bicubic',
        align_corners=False).to(table.dtype)
    grid = grid.permute(0, 2, 3, 1).flatten(0, 2)
    return torch.cat((extra, grid), dim=0)
