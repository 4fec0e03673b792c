"""Helpers shared by the lazy pretraining datasets: positional reads that
survive ``fork`` and index files built once per machine."""
import os
import os.path as osp
import uuid
from typing import Callable, Dict

import numpy as np
from mmengine.dist import barrier, get_local_rank


class PositionalReader:
    """Reads byte ranges with ``os.pread``: no shared file position, so the
    cached descriptors are safe in forked data loader workers."""

    def __init__(self) -> None:
        self._fds: Dict[str, int] = {}

    def read(self, path: str, start: int, end: int) -> bytes:
        """The bytes ``[start, end)`` of ``path``."""
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fds[path] = os.open(path, os.O_RDONLY)
        return os.pread(fd, end - start, start)

    def __getstate__(self) -> dict:
        return {'_fds': {}}  # descriptors do not travel to spawned workers

    def __del__(self) -> None:
        for fd in self._fds.values():
            os.close(fd)


def save_npy_atomic(path: str, array: np.ndarray) -> None:
    """``np.save`` through a temporary file and a rename: concurrent
    writers of the same index never leave a half-written file."""
    tmp = f'{path}.{uuid.uuid4().hex}.tmp'
    with open(tmp, 'wb') as f:
        np.save(f, array)
    os.replace(tmp, path)


def local_rank() -> int:
    """The process's rank on its machine: mmengine's local group when one
    was set up (``init_local_group``), else the launcher's ``LOCAL_RANK``
    (torchrun) or ``SLURM_LOCALID``; 0 outside distributed runs."""
    try:
        return get_local_rank()
    except RuntimeError:  # mmengine's pytorch launcher makes no local group
        return int(
            os.environ.get('LOCAL_RANK', os.environ.get('SLURM_LOCALID', 0)))


def build_once(index_file: str, is_current: Callable[[], bool],
               build: Callable[[], None]) -> None:
    """Run ``build`` (which writes ``index_file``) on local rank 0 when the
    index is missing or stale, while the other ranks wait at a barrier
    (a no-op outside distributed runs)."""
    if local_rank() == 0 and not (osp.isfile(index_file)
                                      and is_current()):
        build()
    barrier()
