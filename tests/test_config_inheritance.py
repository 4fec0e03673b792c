"""Structural facts of the config tree (configs/_base_ and its leaves).

Every config loads, every base is inherited, every leaf under configs/beit3
runs the hooks of configs/_base_/beit3_runtime.py, the large variants stay
short (they inherit their base recipe and say only what differs), and the
Flickr30k base reads mmpretrain's Flickr30k files.
"""
import ast
import glob
import os.path as osp

import mmpretrain
import pytest
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(
    osp.relpath(p, ROOT)
    for p in glob.glob(osp.join(ROOT, 'configs/**/*.py'), recursive=True))
LEAVES = [p for p in CONFIGS if p.startswith('configs/beit3/')]
PROJECT_CONFIGS = sorted(
    osp.relpath(p, ROOT)
    for p in glob.glob(osp.join(ROOT, 'projects/*/configs/*.py')))
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


def _own_bases(path: str) -> list:
    """The beit3-mm files in ``path``'s ``_base_`` (not ``lib::`` ones),
    relative to ROOT."""
    with open(osp.join(ROOT, path)) as f:
        tree = ast.parse(f.read())
    bases = []
    for node in tree.body:
        if (isinstance(node, ast.Assign)
                and getattr(node.targets[0], 'id', None) == '_base_'):
            value = ast.literal_eval(node.value)
            bases = [value] if isinstance(value, str) else value
    return [
        osp.normpath(osp.join(osp.dirname(path), b)) for b in bases
        if '::' not in b
    ]


def test_every_base_is_inherited():
    reached, todo = set(), LEAVES + PROJECT_CONFIGS
    while todo:
        bases = _own_bases(todo.pop())
        todo += [b for b in bases if b not in reached]
        reached.update(bases)
    unused = [p for p in CONFIGS if not p.startswith('configs/beit3/')]
    assert sorted(set(unused) - reached) == []


def test_flickr30k_base_reads_mmpretrains_flickr30k_files():
    """flickr30k_retrieval_384px.py puts Flickr30k's dataset on COCO's
    loaders: each loader is mmpretrain's flickr30k_retrieval.py one but for
    the pipeline and the stacking collate."""
    ours = Config.fromfile(
        osp.join(ROOT, 'configs/_base_/datasets/flickr30k_retrieval_384px.py'))
    theirs = Config.fromfile(
        osp.join(
            osp.dirname(mmpretrain.__file__),
            '.mim/configs/_base_/datasets/flickr30k_retrieval.py'))

    def strip(cfg: dict, drop: tuple) -> dict:
        return {
            k: strip(v, drop) if isinstance(v, dict) else v
            for k, v in cfg.items() if k not in drop + ('_scope_', )
        }

    for split in ('train', 'val', 'test'):
        loader = ours[f'{split}_dataloader'].to_dict()
        assert loader['collate_fn'] == dict(type='default_collate')
        assert loader['dataset']['pipeline'] == ours[
            'beit3_train_pipeline' if split == 'train' else
            'beit3_test_pipeline']
        drop = ('pipeline', 'collate_fn')
        assert strip(loader, drop) == strip(
            theirs[f'{split}_dataloader'].to_dict(), drop), split
