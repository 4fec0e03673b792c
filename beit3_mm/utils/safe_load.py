"""Checkpoint reading without arbitrary unpickling.

torch >= 2.6 loads with ``weights_only=True``: only tensors, containers and
allow-listed classes are rebuilt. Two kinds of file need a few more classes:

- the official BEiT-3 training script saves ``args`` as an
  ``argparse.Namespace``; :func:`read_checkpoint` allows it for the call;
- mmengine checkpoints (resume, ``load_from``, ``tools/test.py``) hold the
  message hub's ``HistoryBuffer`` (with its statistics methods, pickled as
  ``getattr(HistoryBuffer, 'mean')``) and NumPy arrays and scalars;
  :func:`setup_safe_loading` allow-lists exactly those for the process.
  ``getattr`` itself is not allowed: a stand-in answers only for
  HistoryBuffer's statistics methods.

mmengine's ``CheckpointLoader`` (the Runner's ``load_from`` and resume,
``load_checkpoint``, the OpenMMLab inferencers) calls ``torch.load`` without
``weights_only``, which ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` turns into
full unpickling; for http(s) it passes ``weights_only=False`` through
``torch.hub``. :func:`setup_safe_loading` makes it read local files, http(s)
URLs and s3 / petrel paths here, with ``weights_only=True`` passed
explicitly (which that variable cannot override). Its model-zoo aliases
(``torchvision://``, ``open-mmlab://``, ``mmcls://``, ``pavi://``) still
call mmengine's own readers.

Every read is remembered (:func:`last_checkpoint_read`: the path and the
shapes of its model weights), so that a model finding the weights it gets
wrong can name the file they came from.
"""
import argparse
import io
import os
import os.path as osp
import pickle
import re
import zipfile
from contextlib import contextmanager
from typing import Any, Dict, Iterator, NamedTuple, Optional, Tuple

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.fileio import get_file_backend
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader

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


# Where torch's weights-only unpickler names what it refused.
_REFUSED_PATTERNS = (
    r'GLOBAL (\S+) was not an allowed global',
    r'unsupported GLOBAL (\S+) whose module',
    r'unrecognized function (.+?)(?: which belongs|$)',
    r"but got <class '([^']+)'>",
)


class CheckpointRead(NamedTuple):
    """A checkpoint read: where from, and its :func:`weight_shapes`."""
    path: str
    shapes: Dict[str, Tuple[int, ...]]


_last_read: Optional[CheckpointRead] = None


def last_checkpoint_read() -> Optional[CheckpointRead]:
    """The checkpoint read last in this process, if any."""
    return _last_read


def weight_shapes(ckpt: Any) -> Dict[str, Tuple[int, ...]]:
    """Key -> shape of the model weights of a checkpoint or state dict:
    its ``state_dict`` (mmengine), ``model`` (released files) or
    ``module``, else its top level; entries that are not tensors are left
    out."""
    weights = ckpt
    if isinstance(ckpt, dict):
        weights = next((ckpt[k] for k in ('state_dict', 'model', 'module')
                        if isinstance(ckpt.get(k), dict)), ckpt)
    if not isinstance(weights, dict):
        return {}
    return {
        k: tuple(v.shape)
        for k, v in weights.items() if isinstance(v, torch.Tensor)
    }


def _remember(path: str, ckpt: Any) -> None:
    global _last_read
    _last_read = CheckpointRead(path, weight_shapes(ckpt))


def _refused(error: pickle.UnpicklingError) -> Optional[str]:
    """What torch's weights-only unpickler refused, if it names it."""
    for pattern in _REFUSED_PATTERNS:
        match = re.search(pattern, str(error), re.MULTILINE)
        if match:
            return match.group(1)
    return None


def _reason(error: Exception) -> str:
    """torch's error without its advice to load unsafely."""
    text = str(error).replace(torch.serialization.UNSAFE_MESSAGE, '')
    text = text.split('Check the documentation of torch.load')[0]
    text = ' '.join(text.split('WeightsUnpickler error:')[-1].split())
    return f'{type(error).__name__}: {text}' if text else type(
        error).__name__


@contextmanager
def _reading(path: str) -> Iterator[None]:
    """Allow the official training script's classes; turn torch's errors
    into ones that name ``path`` and never advise unsafe loading."""
    try:
        with torch.serialization.safe_globals(OFFICIAL_SAFE_GLOBALS):
            yield
    except pickle.UnpicklingError as e:
        refused = _refused(e)
        if refused is not None:
            raise RuntimeError(
                f'refusing to load {path}: it pickles {refused}, which is '
                f'outside the allow-list of tensors, containers, '
                f'argparse.Namespace and mmengine/NumPy state') from None
        reason = _reason(e)
    except (RuntimeError, EOFError, ValueError, KeyError) as e:
        reason = _reason(e)
    else:
        return
    raise RuntimeError(
        f'{path} is not a readable PyTorch checkpoint ({reason})') from None


def read_checkpoint(path: str,
                    mmap: bool = False,
                    map_location: Any = 'cpu') -> Any:
    """Load a checkpoint file with ``weights_only=True``.

    With ``mmap=True`` the tensors of a zip-format file (any ``torch.save``
    since 1.6) stay on disk until they are read: for looking at the keys of
    a large file without reading it.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        RuntimeError: the file is not a checkpoint, or pickles a class
            outside the allow-list (named in the message).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    with _reading(path):
        ckpt = torch.load(
            path,
            map_location=map_location,
            weights_only=True,
            mmap=mmap and zipfile.is_zipfile(path))
    _remember(path, ckpt)
    return ckpt


def load_from_local(filename: str, map_location: Any = None) -> Any:
    """mmengine's local-file scheme, safely: :func:`read_checkpoint`."""
    return read_checkpoint(
        osp.expanduser(filename), map_location=map_location)


def load_from_http(filename: str,
                   map_location: Any = None,
                   model_dir: Optional[str] = None,
                   progress: bool = os.isatty(0)) -> Any:
    """mmengine's http(s) scheme with ``weights_only=True``: rank 0
    downloads into torch.hub's cache first, the other ranks then read it."""

    def load() -> Any:
        with _reading(filename):
            ckpt = torch.hub.load_state_dict_from_url(
                filename,
                model_dir=model_dir,
                map_location=map_location,
                progress=progress,
                weights_only=True)
        _remember(filename, ckpt)
        return ckpt

    rank, world_size = get_dist_info()
    if rank == 0:
        checkpoint = load()
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            checkpoint = load()
    return checkpoint


def load_from_ceph(filename: str,
                   map_location: Any = None,
                   backend: str = 'petrel') -> Any:
    """mmengine's s3 / petrel scheme with ``weights_only=True``."""
    file_backend = get_file_backend(
        filename, backend_args={'backend': backend})
    with io.BytesIO(file_backend.get(filename)) as buffer, \
            _reading(filename):
        ckpt = torch.load(
            buffer, map_location=map_location, weights_only=True)
    _remember(filename, ckpt)
    return ckpt


def setup_safe_loading() -> None:
    """Allow-list the classes of mmengine checkpoints for ``torch.load`` and
    make mmengine's ``CheckpointLoader`` read local files, http(s) URLs and
    s3 / petrel paths with the safe readers above."""
    torch.serialization.add_safe_globals(MMENGINE_SAFE_GLOBALS)
    for prefixes, loader in (('', load_from_local),
                             (('http://', 'https://'), load_from_http),
                             ([r'(\S+\:)?s3://', r'(\S+\:)?petrel://'],
                              load_from_ceph)):
        CheckpointLoader.register_scheme(prefixes, loader, force=True)
