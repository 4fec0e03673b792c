"""Generators of the embedded demo data sets (written to disk in the
layouts the real datasets use) and the demo tokenizer."""
from .shapes import (DETECTION_SHAPES, SEGMENTATION_CLASSES, SHAPES,
                     draw_shape, make_classification_demo,
                     make_detection_demo, make_segmentation_demo,
                     train_demo_tokenizer)
from .pretrain import make_pretrain_demo
from .vl_scenes import COLOURS, make_vl_demo

__all__ = [
    'DETECTION_SHAPES', 'SHAPES', 'draw_shape', 'make_classification_demo',
    'make_detection_demo', 'make_segmentation_demo',
    'SEGMENTATION_CLASSES', 'train_demo_tokenizer', 'COLOURS', 'make_vl_demo',
    'make_pretrain_demo'
]
