from .demo import (DETECTION_SHAPES, SEGMENTATION_CLASSES, SHAPES,
                   draw_shape, make_classification_demo, make_detection_demo,
                   make_segmentation_demo)

__all__ = [
    'DETECTION_SHAPES', 'SHAPES', 'draw_shape', 'make_classification_demo',
    'make_detection_demo', 'make_segmentation_demo', 'SEGMENTATION_CLASSES'
]
