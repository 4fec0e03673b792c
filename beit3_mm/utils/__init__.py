from .launch import (add_launch_args, check_test_checkpoint, finish_launch,
                     load_config, setup_launch)
from .safe_load import allow_mmengine_checkpoints, read_checkpoint

__all__ = [
    'allow_mmengine_checkpoints', 'read_checkpoint', 'add_launch_args',
    'load_config', 'setup_launch', 'finish_launch', 'check_test_checkpoint'
]
