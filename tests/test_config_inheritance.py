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
# Not yet short: the 896 ViT-Adapter config writes its 1024-wide Mask2Former
# head, 896 pipelines and 80k schedule over the 512 recipe, which inherits
# mmseg's whole Mask2Former config (no separate model / data bases to list
# beside it). strict: this test reports when it is fixed.
LONG_YET = {
    'configs/beit3/segmentation/'
    'beit3-large-p16_vit-adapter_mask2former_8xb2-80k_ade20k-896x896.py',
}


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


@pytest.mark.parametrize('path', [
    pytest.param(p, marks=pytest.mark.xfail(strict=True)) if p in LONG_YET
    else p for p in LARGE
])
def test_large_variants_are_short(path):
    with open(osp.join(ROOT, path)) as f:
        lines = f.read().splitlines()
    assert len(lines) < 25, f'{path}: {len(lines)} lines'
