"""BEiT-3 for OpenMMLab.

Importing the package registers its components (see
:mod:`beit3_mm.registry`) and allow-lists the classes that mmengine
checkpoints hold for ``torch.load(weights_only=True)``.
"""
from .utils import allow_mmengine_checkpoints
from .version import __version__

allow_mmengine_checkpoints()

from . import datasets, engine, models  # noqa: E402,F401

__all__ = ['__version__']
