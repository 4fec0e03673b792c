from .norm_ema_quantizer import NormEMAVectorQuantizer
from .vqkd import VQKDTokenizer, VQKDViT
from .vqkd_loading import (fit_vqkd_state, load_vqkd_checkpoint,
                           mmpretrain_to_official)

__all__ = [
    'VQKDTokenizer', 'VQKDViT', 'NormEMAVectorQuantizer',
    'load_vqkd_checkpoint', 'fit_vqkd_state', 'mmpretrain_to_official'
]
