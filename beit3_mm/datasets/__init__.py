from .demo import SHAPES, draw_shape, make_classification_demo

__all__ = ['SHAPES', 'draw_shape', 'make_classification_demo']
