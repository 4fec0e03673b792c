from .launch import setup_launch
from .safe_load import allow_mmengine_checkpoints, read_checkpoint

__all__ = ['allow_mmengine_checkpoints', 'read_checkpoint', 'setup_launch']
