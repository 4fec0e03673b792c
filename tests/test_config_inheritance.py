"""Structural facts of the config tree (configs/_base_ and its leaves).

Every config loads, every leaf under configs/beit3 runs the hooks of
configs/_base_/beit3_runtime.py, and the large variants stay short: they
inherit their base recipe and say only what differs.
"""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(
    osp.relpath(p, ROOT)
    for p in glob.glob(osp.join(ROOT, 'configs/**/*.py'), recursive=True))
LEAVES = [p for p in CONFIGS if p.startswith('configs/beit3/')]
LARGE = [p for p in LEAVES if 'large' in osp.basename(p)]


def test_tree_has_leaves_and_bases():
    assert LEAVES and LARGE
    for kind in ('datasets', 'models', 'schedules'):
        assert glob.glob(osp.join(ROOT, 'configs/_base_', kind, '*.py')), kind


@pytest.mark.parametrize('path', CONFIGS)
def test_config_loads(path):
    Config.fromfile(osp.join(ROOT, path))


@pytest.mark.parametrize('path', LEAVES)
def test_leaf_runs_the_beit3_runtime_hooks(path):
    runtime = Config.fromfile(
        osp.join(ROOT, 'configs/_base_/beit3_runtime.py')).custom_hooks
    hooks = Config.fromfile(osp.join(ROOT, path)).get('custom_hooks', [])
    for hook in runtime:
        assert hook in hooks, (path, hook)


@pytest.mark.parametrize('path', LARGE)
def test_large_variants_are_short(path):
    with open(osp.join(ROOT, path)) as f:
        lines = f.read().splitlines()
    assert len(lines) < 25, f'{path}: {len(lines)} lines'
