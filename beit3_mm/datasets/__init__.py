from .coco_karpathy import convert_karpathy
from .nocaps import NoCapsImages
from .pretrain import (GuardedDataset, ImageTextPairs, ImageTextShards,
                       MixedSourceSampler, PackPretrainInputs,
                       PretrainTextCorpus)
from .vqa_answers import (build_answer_list, load_answer_list,
                          normalize_answer, save_answer_list, vqa_soft_score)

__all__ = [
    'build_answer_list', 'load_answer_list', 'normalize_answer',
    'save_answer_list', 'vqa_soft_score', 'NoCapsImages', 'convert_karpathy',
    'GuardedDataset', 'ImageTextPairs', 'ImageTextShards',
    'MixedSourceSampler', 'PackPretrainInputs', 'PretrainTextCorpus'
]
