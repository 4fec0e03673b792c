"""mmengine's DeepSpeed and FSDP strategies made to run on this stack, on
GPUs and on the CPU (``configs/_base_/strategies``)."""
from .deepspeed import (BEiT3DeepSpeedStrategy, register_deepspeed_optimizers,
                        weights_only_torch_load)
from .fsdp import BEiT3FSDPStrategy, is_multiway_layer, multiway_layer_policy
from .lockstep import require_lockstep_passes

__all__ = [
    'BEiT3DeepSpeedStrategy', 'BEiT3FSDPStrategy', 'is_multiway_layer',
    'multiway_layer_policy', 'register_deepspeed_optimizers',
    'require_lockstep_passes', 'weights_only_torch_load'
]
