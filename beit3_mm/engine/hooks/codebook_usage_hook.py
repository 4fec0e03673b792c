"""The codebook usage of a VQ tokenizer in training, per epoch."""
from typing import Tuple

import torch
from mmengine.dist import all_reduce
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from beit3_mm.registry import HOOKS

Tensor = torch.Tensor


def codebook_usage(counts: Tensor) -> Tuple[int, float]:
    """(number of codes used, their share of the codebook) from per-code
    counts (num_embed,)."""
    used = int((counts > 0).sum())
    return used, used / counts.numel()


@HOOKS.register_module()
class CodebookUsageHook(Hook):
    """Logs the share of codebook entries that the training batches of an
    epoch used, over all ranks: BEiT v2's "unused code" statistic of each
    training epoch.

    The model (e.g. :class:`~beit3_mm.models.selfsup.VQKDTrainer`) counts
    the codes of its training batches per rank in ``code_counts``
    (num_embed,), restarted by ``reset_code_counts()``; this hook restarts
    them before each epoch and sums them over the ranks after it (one
    all-reduce per epoch). The official code reads its EMA of the per-step
    counts instead, whose entries underflow to 0 after ~10k steps without
    a hit; exact counts do not.

    Logged as ``codebook_usage`` (share, in [0, 1]) and ``unused_codes``
    (count) to the log and the visualizer (``scalars.json``, at the step of
    the epoch's last iteration). Not through the message hub: the logger
    hook would repeat the last epoch's value in every iteration's line.
    """
    priority = 'NORMAL'

    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def before_train_epoch(self, runner) -> None:
        self._model(runner).reset_code_counts()

    def after_train_epoch(self, runner) -> None:
        counts = self._model(runner).code_counts.clone()
        all_reduce(counts)
        used, usage = codebook_usage(counts)
        unused = counts.numel() - used
        runner.visualizer.add_scalars(
            dict(codebook_usage=usage, unused_codes=unused), step=runner.iter)
        runner.logger.info(
            f'Epoch {runner.epoch + 1}: codebook usage {usage:.2%} ({used} '
            f'of {counts.numel()} codes used, {unused} unused)')
