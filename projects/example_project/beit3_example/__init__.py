"""The example project's components: importing the package registers
them (configs list it in ``custom_imports``)."""
from .attention_pool_neck import AttentionPoolNeck

__all__ = ['AttentionPoolNeck']
