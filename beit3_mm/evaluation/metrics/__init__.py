from .caption import CaptionMetric
from .nocaps import NoCapsMetric

__all__ = ['CaptionMetric', 'NoCapsMetric']
