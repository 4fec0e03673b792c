"""BEiT-3 for OpenMMLab.

Importing the package registers its components (see
:mod:`beit3_mm.registry`), allow-lists the classes that mmengine
checkpoints hold for ``torch.load(weights_only=True)`` and makes mmengine's
checkpoint loader read files and URLs that way (see
:mod:`beit3_mm.utils.safe_load`). :mod:`beit3_mm.demo` (the demo data
generators) registers nothing and is imported where it is used.
"""
import os

import torch

# mmengine.runner imports deepspeed when it is installed, and deepspeed
# probes for accelerators at import: ~1 s and a warning on a machine without
# CUDA. There it can only run on the CPU; elsewhere it probes as usual (a
# DS_ACCELERATOR set by the user wins).
if not torch.cuda.is_available():
    os.environ.setdefault('DS_ACCELERATOR', 'cpu')

from .utils import setup_safe_loading  # noqa: E402
from .version import __version__  # noqa: E402

setup_safe_loading()

from . import datasets, engine, evaluation, models  # noqa: E402,F401

__all__ = ['__version__']
