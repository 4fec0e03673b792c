from .beit3 import BEiT3
from .beit3_adapter import BEiT3Adapter
from .beit3_dense import BEiT3Dense

__all__ = ['BEiT3', 'BEiT3Dense', 'BEiT3Adapter']
