from .demo import (DETECTION_SHAPES, SHAPES, draw_shape,
                   make_classification_demo, make_detection_demo)

__all__ = [
    'DETECTION_SHAPES', 'SHAPES', 'draw_shape', 'make_classification_demo',
    'make_detection_demo'
]
