from .demo import (DETECTION_SHAPES, SEGMENTATION_CLASSES, SHAPES,
                   draw_shape, make_classification_demo, make_detection_demo,
                   make_segmentation_demo, train_demo_tokenizer)
from .vl_demo import COLOURS, make_vl_demo
from .vqa_answers import (build_answer_list, load_answer_list,
                          normalize_answer, save_answer_list, vqa_soft_score)

__all__ = [
    'DETECTION_SHAPES', 'SHAPES', 'draw_shape', 'make_classification_demo',
    'make_detection_demo', 'make_segmentation_demo',
    'SEGMENTATION_CLASSES', 'train_demo_tokenizer', 'COLOURS', 'make_vl_demo',
    'build_answer_list', 'load_answer_list', 'normalize_answer',
    'save_answer_list', 'vqa_soft_score'
]
