"""Checkpoint reading without arbitrary unpickling.

torch >= 2.6 loads with ``weights_only=True``: only tensors, containers and
allow-listed classes are rebuilt. Two kinds of file need a few more classes:

- the official BEiT-3 training script saves ``args`` as an
  ``argparse.Namespace``; :func:`read_checkpoint` allows it for the call;
- mmengine checkpoints (resume, ``load_from``, ``tools/test.py``) hold the
  message hub's ``HistoryBuffer`` (with its statistics methods, pickled as
  ``getattr(HistoryBuffer, 'mean')``) and NumPy arrays and scalars; mmengine
  calls ``torch.load`` itself, so :func:`allow_mmengine_checkpoints`
  allow-lists exactly those for the process. ``getattr`` itself is not
  allowed: a stand-in answers only for HistoryBuffer's statistics methods.
"""
import argparse
import os
import pickle
import zipfile
from typing import Any

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

_HISTORY_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_method(owner: Any, name: str) -> Any:
    """Unpickles ``getattr(HistoryBuffer, name)`` for a statistics method,
    and nothing else."""
    if owner is HistoryBuffer and (
            name in _HISTORY_STATISTICS
            or name in HistoryBuffer._statistics_methods):
        return getattr(owner, name)
    raise pickle.UnpicklingError(
        f'getattr({owner!r}, {name!r}) is not allowed in a checkpoint')


# What an mmengine 0.10 checkpoint pickles besides tensors and containers.
MMENGINE_SAFE_GLOBALS = [
    HistoryBuffer,
    (_history_buffer_method, 'builtins.getattr'),
    np.core.multiarray._reconstruct,
    np.core.multiarray.scalar,
    np.ndarray,
    np.dtype,
    # uint32: the key array of ``np.random.get_state()``.
    *{type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32,
                                  np.uint32, np.bool_)},
]
# What the official BEiT-3 training script pickles besides the above.
OFFICIAL_SAFE_GLOBALS = [argparse.Namespace]


def allow_mmengine_checkpoints() -> None:
    """Allow-list the classes of mmengine checkpoints for ``torch.load``."""
    torch.serialization.add_safe_globals(MMENGINE_SAFE_GLOBALS)


def read_checkpoint(path: str, mmap: bool = False) -> Any:
    """Load a checkpoint file on the CPU with ``weights_only=True``.

    With ``mmap=True`` the tensors of a zip-format file (any ``torch.save``
    since 1.6) stay on disk until they are read: for looking at the keys of
    a large file without reading it.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        RuntimeError: the file is not a checkpoint, or pickles a class
            outside the allow-list (named in the message).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    try:
        with torch.serialization.safe_globals(OFFICIAL_SAFE_GLOBALS):
            return torch.load(
                path,
                map_location='cpu',
                weights_only=True,
                mmap=mmap and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        raise RuntimeError(
            f'refusing to load {path}: it pickles objects outside the '
            f'allow-list of tensors, containers, argparse.Namespace and '
            f'mmengine/NumPy state ({e})') from None
    except (RuntimeError, EOFError, ValueError) as e:
        raise RuntimeError(f'{path} is not a readable PyTorch checkpoint: '
                           f'{e}') from None
