"""Runner hooks that every beit3-mm config runs (``configs/_base_/
beit3_runtime.py``)."""
from .loss_monitor_hook import LossMonitorHook

__all__ = ['LossMonitorHook']
