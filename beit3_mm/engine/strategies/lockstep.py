"""Models whose passes depend on the batch, under sharded training."""
import torch.nn as nn


def require_lockstep_passes(model: nn.Module) -> None:
    """Set ``lockstep_passes = True`` on every submodule that has the
    attribute (e.g. :class:`~beit3_mm.models.selfsup.BEiT3Pretrain`,
    whose passes follow the sources of a batch): FSDP and ZeRO-3 gather
    weights in every module call and ZeRO-2 reduces the gradients of the
    parameters used, so every rank must run the same calls and use the
    same parameters, or the collectives do not match (a hang or a crash)."""
    for module in model.modules():
        if hasattr(module, 'lockstep_passes'):
            module.lockstep_passes = True
