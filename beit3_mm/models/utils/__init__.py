from .text_masking import corrupt_tokens
from .weight_loading import (CheckpointMismatchError, check_backbone_state,
                             fit_backbone_state, fit_grid_weights,
                             is_language_key, load_beit3_checkpoint,
                             load_beit3_model, model_state_dict,
                             read_beit3_file, released_kind, released_to_mm,
                             resize_patch_kernel, split_backbone,
                             summarize_keys)

__all__ = [
    'load_beit3_checkpoint', 'load_beit3_model', 'read_beit3_file',
    'released_to_mm', 'released_kind', 'fit_backbone_state',
    'model_state_dict', 'split_backbone', 'is_language_key',
    'summarize_keys', 'CheckpointMismatchError', 'check_backbone_state',
    'fit_grid_weights', 'resize_patch_kernel', 'corrupt_tokens'
]
