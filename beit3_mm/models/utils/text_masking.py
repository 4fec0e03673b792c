"""BERT text corruption with an exact count of chosen positions per row,
shared by pretraining (:func:`~beit3_mm.models.selfsup.mask_text_tokens`)
and captioning (:meth:`~beit3_mm.models.multimodal.BEiT3Caption.corrupt`),
which differ only in how many positions each row gets."""
from typing import Tuple

import torch

Tensor = torch.Tensor


def corrupt_tokens(text_ids: Tensor, eligible: Tensor, counts: Tensor,
                   mask_id: int,
                   random_ids: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
    """Choose ``counts[b]`` of the eligible positions of each row ``b`` (a
    uniformly random subset); each chosen token becomes ``mask_id`` (80%),
    a random id from ``random_ids`` (10%, bounds inclusive) or stays (10%),
    independently.

    Randomness: torch's global generator of ``text_ids``' device, two
    ``torch.rand`` and one ``torch.randint`` of (B, M) per call whatever
    is chosen, so that a run resumed with the same random state (see
    :class:`~beit3_mm.engine.hooks.RandomStateHook`) draws the same masks.

    Args:
        text_ids: (B, M) token ids.
        eligible: (B, M) bool, the positions that may be chosen.
        counts: (B,) int, how many eligible positions each row chooses,
            in ``[0, eligible.sum(1)]``.
        mask_id: the ``<mask>`` id.
        random_ids: (low, high) of the random replacement ids.

    Returns:
        The corrupted ids (B, M) and the chosen positions (B, M) bool.

    Raises:
        ValueError: a count outside ``[0, eligible.sum(1)]``.
    """
    B, M = text_ids.shape
    device = text_ids.device
    bad = ((counts < 0) | (counts > eligible.sum(1))).nonzero().flatten()
    if len(bad):
        row = bad[0].item()
        raise ValueError(
            f'corrupt_tokens: row {row} asks for {counts[row].item()} '
            f'positions and has {eligible[row].sum().item()} eligible ones: '
            f'give counts in [0, eligible.sum(1)]')
    # the `count` smallest random keys of the eligible positions
    keys = torch.rand(B, M, device=device).masked_fill(~eligible, 2.)
    rank = keys.argsort(1).argsort(1)
    chosen = rank < counts[:, None]
    choice = torch.rand(B, M, device=device)
    replace = torch.randint(random_ids[0], random_ids[1] + 1, (B, M),
                            device=device)
    new_ids = torch.where(
        choice < 0.8, torch.full_like(text_ids, mask_id),
        torch.where(choice < 0.9, replace, text_ids))
    return torch.where(chosen, new_ids, text_ids), chosen
