from .layer_decay_optim_wrapper_constructor import \
    LayerDecayOptimWrapperConstructor
from .mixed_precision_optim_wrapper import MixedPrecisionOptimWrapper

__all__ = ['LayerDecayOptimWrapperConstructor', 'MixedPrecisionOptimWrapper']
