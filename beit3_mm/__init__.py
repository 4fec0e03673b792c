"""BEiT-3 for OpenMMLab.

Importing the package registers its components (see
:mod:`beit3_mm.registry`), allow-lists the classes that mmengine
checkpoints hold for ``torch.load(weights_only=True)`` and makes mmengine's
checkpoint loader read files and URLs that way (see
:mod:`beit3_mm.utils.safe_load`). :mod:`beit3_mm.demo` (the demo data
generators) registers nothing and is imported where it is used.
"""
from .utils import setup_safe_loading
from .version import __version__

setup_safe_loading()

from . import datasets, engine, evaluation, models  # noqa: E402,F401

__all__ = ['__version__']
