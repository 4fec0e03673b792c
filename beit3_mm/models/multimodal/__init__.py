from .base import VL_DATA_PREPROCESSOR, BEiT3VLModel
from .beit3_caption import BEiT3Caption, caption_loss
from .beit3_nlvr2 import BEiT3NLVR2
from .beit3_retrieval import BEiT3Retrieval, contrastive_loss
from .beit3_vqa import BEiT3VQA
from .beit3_zero_shot import BEiT3ZeroShotClassifier
from .tokenizer import BEiT3Tokenizer

__all__ = [
    'BEiT3VLModel', 'BEiT3Tokenizer', 'VL_DATA_PREPROCESSOR', 'BEiT3Retrieval',
    'BEiT3ZeroShotClassifier', 'contrastive_loss', 'BEiT3VQA', 'BEiT3NLVR2',
    'BEiT3Caption', 'caption_loss'
]
