from .launch import add_launch_args, finish_launch, load_config, setup_launch
from .safe_load import (CheckpointRead, last_checkpoint_read, read_checkpoint,
                        setup_safe_loading, weight_shapes)

__all__ = [
    'setup_safe_loading', 'read_checkpoint', 'last_checkpoint_read',
    'CheckpointRead', 'weight_shapes', 'add_launch_args', 'load_config',
    'setup_launch', 'finish_launch'
]
