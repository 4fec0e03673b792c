from .beit3_pretrain import BEiT3Pretrain, BEiT3PretrainDataPreprocessor
from .masking import BlockMaskGenerator, mask_text_tokens
from .norm_ema_quantizer import NormEMAVectorQuantizer
from .vqkd import VQKDTokenizer, VQKDViT
from .vqkd_loading import (fit_vqkd_state, load_vqkd_checkpoint,
                           mmpretrain_to_official)
from .vqkd_training import VQKDTrainer, cosine_rec_loss, vqkd_official_state

__all__ = [
    'VQKDTokenizer', 'VQKDViT', 'NormEMAVectorQuantizer',
    'load_vqkd_checkpoint', 'fit_vqkd_state', 'mmpretrain_to_official',
    'BEiT3Pretrain', 'BEiT3PretrainDataPreprocessor', 'BlockMaskGenerator',
    'mask_text_tokens', 'VQKDTrainer', 'cosine_rec_loss',
    'vqkd_official_state'
]
