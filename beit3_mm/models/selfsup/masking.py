"""The masks of BEiT-3 pretraining: block-wise image masks (BEiT) and BERT
text corruption.

Both draw from torch's global random state (the generator of the CPU,
or of the ids' device for text), so that
:class:`~beit3_mm.engine.hooks.RandomStateHook` resumes a run exactly, and
both consume a fixed amount of random numbers per call, whatever they
draw.
"""
import math
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..utils import corrupt_tokens

Tensor = torch.Tensor


class BlockMaskGenerator:
    """BEiT's block-wise masking with an exact count that always ends.

    The block phase is the official BEiT ``MaskingGenerator`` (unilm/beit
    ``masking_generator.py``): rounds of up to 10 attempts, each a block of
    ``uniform(min_num_patches, remaining)`` patches (``remaining`` capped
    by ``max_num_patches``), aspect ratio ``exp(uniform(log(min_aspect),
    log(max_aspect)))``, height and width rounded and smaller than the
    grid's, placed uniformly; a block is kept when it adds between 1 and
    ``remaining`` new patches. The official generator stops short when a
    whole round adds nothing; here the block phase also ends after
    ``max_attempts`` attempts. Then the mask is filled up to the exact
    count from the border of the masked region: repeatedly, the unmasked
    patches next (4-neighbourhood) to a masked one, in a random order, or
    any unmasked patch when nothing is masked yet. So any grid and any
    ratio in [0, 1] ends with exactly ``num_masking_patches`` patches.

    Randomness: one ``torch.rand`` call of ``(B, max_attempts, 4)`` for the
    blocks and one of ``(B, h * w)`` for the fill order, from torch's
    global CPU generator.

    Args:
        grid (int | tuple): the patch grid (h, w).
        mask_ratio (float): share of the patches to mask, in [0, 1]; the
            count is ``int(mask_ratio * h * w + 0.5)`` (78 of 196 for 0.4
            at 224/16).
        min_num_patches (int): smallest block. Defaults to 16 (BEiT).
        max_num_patches (int, optional): largest block. Defaults to the
            count.
        min_aspect (float): one bound of the blocks' aspect ratio (h / w),
            > 0. Defaults to 0.3.
        max_aspect (float, optional): the other bound. Defaults to
            ``1 / min_aspect``.
        max_attempts (int): block attempts per mask. Defaults to 100.

    Raises:
        ValueError: a ratio outside [0, 1], a positive ratio that masks no
            patch of the grid, ``min_num_patches < 1``, an aspect ratio
            <= 0.
    """

    ROUND = 10

    def __init__(self,
                 grid: Union[int, Tuple[int, int]],
                 mask_ratio: float,
                 min_num_patches: int = 16,
                 max_num_patches: Optional[int] = None,
                 min_aspect: float = 0.3,
                 max_aspect: Optional[float] = None,
                 max_attempts: int = 100):
        self.height, self.width = (grid, grid) if isinstance(grid,
                                                             int) else grid
        if self.height < 1 or self.width < 1:
            raise ValueError(f'grid={grid}: the patch grid must be at least '
                             f'1x1')
        self.num_patches = self.height * self.width
        if not 0 <= mask_ratio <= 1:
            raise ValueError(f'mask_ratio={mask_ratio} must be in [0, 1]')
        self.num_masking_patches = int(mask_ratio * self.num_patches + 0.5)
        if mask_ratio > 0 and self.num_masking_patches == 0:
            raise ValueError(
                f'mask_ratio={mask_ratio} masks no patch of a '
                f'{self.height}x{self.width} patch grid (ratio * '
                f'{self.num_patches} < 0.5): raise the ratio or the image '
                f'size')
        if min_num_patches < 1:
            raise ValueError(f'min_num_patches={min_num_patches} must be >= 1')
        self.min_num_patches = min_num_patches
        self.max_num_patches = (self.num_masking_patches
                                if max_num_patches is None else
                                max_num_patches)
        if min_aspect <= 0 or (max_aspect is not None and max_aspect <= 0):
            raise ValueError(f'aspect ratios ({min_aspect}, {max_aspect}) '
                             f'must be positive')
        max_aspect = max_aspect or 1 / min_aspect
        # as random.uniform, either order of the bounds
        self.log_aspect_ratio = tuple(
            sorted((math.log(min_aspect), math.log(max_aspect))))
        if max_attempts < 0:
            raise ValueError(f'max_attempts={max_attempts} must be >= 0')
        self.max_attempts = max_attempts

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(grid=({self.height}, {self.width}), '
                f'num_masking_patches={self.num_masking_patches}, '
                f'min_num_patches={self.min_num_patches}, '
                f'max_num_patches={self.max_num_patches}, '
                f'log_aspect_ratio={self.log_aspect_ratio})')

    def __call__(self, batch_size: int) -> Tensor:
        """Masks (B, h * w), bool, True = masked, row-major patches."""
        draws = torch.rand(batch_size, self.max_attempts, 4).tolist()
        order = torch.rand(batch_size, self.num_patches).numpy()
        masks = np.zeros((batch_size, self.height, self.width), dtype=bool)
        for mask, attempts, prio in zip(masks, draws, order):
            count = self._blocks(mask, attempts)
            self._fill(mask, self.num_masking_patches - count,
                       prio.reshape(self.height, self.width))
        return torch.from_numpy(masks.reshape(batch_size, -1))

    def _blocks(self, mask: np.ndarray, attempts: Sequence[list]) -> int:
        """The official block phase on ``mask`` (h, w); the count masked."""
        H, W = self.height, self.width
        count, failed = 0, 0
        lo_aspect, hi_aspect = self.log_aspect_ratio
        for u_area, u_aspect, u_top, u_left in attempts:
            remaining = min(self.num_masking_patches - count,
                            self.max_num_patches)
            if remaining <= 0 or failed == self.ROUND:
                break
            # random.uniform(a, b) = a + (b - a) * U, also for a > b
            area = self.min_num_patches + (remaining -
                                           self.min_num_patches) * u_area
            aspect = math.exp(lo_aspect + (hi_aspect - lo_aspect) * u_aspect)
            h = int(round(math.sqrt(area * aspect)))
            w = int(round(math.sqrt(area / aspect)))
            added = 0
            if 0 < h < H and 0 < w < W:
                top = int(u_top * (H - h + 1))
                left = int(u_left * (W - w + 1))
                block = mask[top:top + h, left:left + w]
                added = h * w - int(block.sum())
                if 0 < added <= remaining:
                    block[...] = True
                else:
                    added = 0
            count += added
            # a round ends at its first success or after ROUND failures
            failed = 0 if added else failed + 1
        return count

    @staticmethod
    def _fill(mask: np.ndarray, need: int, prio: np.ndarray) -> None:
        """Mask ``need`` more patches, grown from the masked region's
        border in the order of ``prio`` (h, w)."""
        while need > 0:
            if mask.any():
                near = np.zeros_like(mask)
                near[1:] |= mask[:-1]
                near[:-1] |= mask[1:]
                near[:, 1:] |= mask[:, :-1]
                near[:, :-1] |= mask[:, 1:]
                candidates = np.flatnonzero(near & ~mask)
            else:
                candidates = np.flatnonzero(~mask)
            chosen = candidates[np.argsort(prio.flat[candidates],
                                           kind='stable')[:need]]
            mask.flat[chosen] = True
            need -= len(chosen)


def mask_text_tokens(text_ids: Tensor, maskable: Tensor, mask_ratio: float,
                     mask_id: int,
                     random_ids: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
    """BERT corruption with an exact count per text: :func:`corrupt_tokens`
    of ``max(1, int(n * mask_ratio + 0.5))`` of the ``n`` maskable
    positions of each row (none when ``n = 0``).

    Args:
        text_ids: (B, M) token ids.
        maskable: (B, M) bool, the positions that may be chosen (not a
            special token, not padding).
        mask_ratio: share of the maskable positions to choose, in (0, 1].
        mask_id: the ``<mask>`` id.
        random_ids: (low, high) of the random replacement ids.

    Returns:
        The corrupted ids (B, M) and the chosen positions (B, M) bool.
    """
    n = maskable.sum(1)
    count = torch.minimum((n * mask_ratio + 0.5).long().clamp(min=1), n)
    return corrupt_tokens(text_ids, maskable, count, mask_id, random_ids)
