from .checkpoint import (fit_backbone_state, is_language_key,
                         load_beit3_checkpoint, model_state_dict,
                         split_backbone, summarize_keys)

__all__ = [
    'load_beit3_checkpoint', 'fit_backbone_state', 'model_state_dict',
    'split_backbone', 'is_language_key', 'summarize_keys'
]
