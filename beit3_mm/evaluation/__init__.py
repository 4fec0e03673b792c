from .metrics import CaptionMetric, NoCapsMetric

__all__ = ['CaptionMetric', 'NoCapsMetric']
