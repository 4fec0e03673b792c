"""Runner hooks: those that every beit3-mm config runs (``configs/_base_/
beit3_runtime.py``) and ``MixedSourceResumeHook`` of the pretraining
configs, ``CodebookUsageHook`` of the VQ-KD tokenizer configs."""
from .checkpoint_check_hook import CheckpointCheckHook
from .codebook_usage_hook import CodebookUsageHook
from .loss_monitor_hook import LossMonitorHook
from .mixed_source_resume_hook import MixedSourceResumeHook
from .random_state_hook import RandomStateHook

__all__ = [
    'CheckpointCheckHook', 'CodebookUsageHook', 'LossMonitorHook',
    'MixedSourceResumeHook', 'RandomStateHook'
]
