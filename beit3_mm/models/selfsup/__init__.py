from .beit3_pretrain import BEiT3Pretrain, BEiT3PretrainDataPreprocessor
from .masking import BlockMaskGenerator, mask_text_tokens
from .norm_ema_quantizer import NormEMAVectorQuantizer
from .vqkd import VQKDTokenizer, VQKDViT
from .vqkd_loading import (fit_vqkd_state, load_vqkd_checkpoint,
                           mmpretrain_to_official)

__all__ = [
    'VQKDTokenizer', 'VQKDViT', 'NormEMAVectorQuantizer',
    'load_vqkd_checkpoint', 'fit_vqkd_state', 'mmpretrain_to_official',
    'BEiT3Pretrain', 'BEiT3PretrainDataPreprocessor', 'BlockMaskGenerator',
    'mask_text_tokens'
]
