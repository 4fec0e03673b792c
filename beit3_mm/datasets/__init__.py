from .coco_karpathy import convert_karpathy
from .nocaps import NoCapsImages
from .pretrain import (ImageTextPairs, ImageTextShards, MixedSourceResumeHook,
                       MixedSourceSampler, PackPretrainInputs,
                       PretrainTextCorpus, pretrain_collate, split_by_source)
from .vqa_answers import (build_answer_list, load_answer_list,
                          normalize_answer, save_answer_list, vqa_soft_score)

__all__ = [
    'build_answer_list', 'load_answer_list', 'normalize_answer',
    'save_answer_list', 'vqa_soft_score', 'NoCapsImages', 'convert_karpathy',
    'ImageTextPairs', 'ImageTextShards', 'MixedSourceResumeHook',
    'MixedSourceSampler', 'PackPretrainInputs', 'PretrainTextCorpus',
    'pretrain_collate', 'split_by_source'
]
