"""A hook for the 1-process references of tests/test_distributed.py
(imported by the training processes through ``custom_imports``)."""
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class SeedPerStepHook(Hook):
    """Seeds torch's generator with the optimizer step's index before each
    micro-batch.

    With ``micro_batches`` = 1 on every rank of a DDP run and = the number
    of ranks in a 1-process run with gradient accumulation, the loss of
    each rank's batch and of the matching micro-batch draw the same random
    numbers (Mask2Former's point sampling).
    """

    def __init__(self, micro_batches: int = 1):
        self.micro_batches = micro_batches

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        torch.manual_seed(runner.iter // self.micro_batches)
