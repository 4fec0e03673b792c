"""Runner hooks that every beit3-mm config runs (``configs/_base_/
beit3_runtime.py``)."""
from .checkpoint_check_hook import CheckpointCheckHook
from .loss_monitor_hook import LossMonitorHook
from .random_state_hook import RandomStateHook

__all__ = ['CheckpointCheckHook', 'LossMonitorHook', 'RandomStateHook']
