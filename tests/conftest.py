"""Test isolation, and the demo runs that several test modules share.

mmengine's default scope is process-global state: a Runner or an
inferencer built in one test sets ``DefaultScope`` (e.g. to ``mmdet``), and
every later ``Registry.build`` would then look names up in that scope. Each
test starts from the scope state it found.
"""
from pathlib import Path
from typing import NamedTuple

import pytest
from helpers import run_vqkd_demo
from mmengine.registry import DefaultScope


@pytest.fixture(autouse=True)
def restore_default_scope():
    saved = DefaultScope._instance_dict.copy()
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)


class VQKDDemo(NamedTuple):
    """The VQ-KD demo's README run (:func:`helpers.run_vqkd_demo`)."""
    root: Path  # its cwd: data/demo_{cls,pretrain}, data/demo_vqkd.pth
    teacher_log: str  # the classification demo's training log


@pytest.fixture(scope='session')
def vqkd_demo(tmp_path_factory) -> VQKDDemo:
    """The VQ-KD demo chain, run once per session (about 2 minutes). Its
    users change none of its files: they only add their own (their runs,
    the pretraining text corpus's index cache)."""
    root = tmp_path_factory.mktemp('vqkd_demo')
    return VQKDDemo(root, run_vqkd_demo(root))
