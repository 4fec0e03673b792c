"""Test isolation: mmengine's default scope is process-global state.

A Runner or an inferencer built in one test sets ``DefaultScope`` (e.g. to
``mmdet``), and every later ``Registry.build`` would then look names up in
that scope. Each test starts from the scope state it found.
"""
import pytest
from mmengine.registry import DefaultScope


@pytest.fixture(autouse=True)
def restore_default_scope():
    saved = DefaultScope._instance_dict.copy()
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)
