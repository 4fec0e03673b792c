"""Registration across scopes and the layer-wise lr decay constructor."""
import pytest
import torch
from helpers import TINY, TINY_IMG
from mmengine.optim import build_optim_wrapper

import beit3_mm  # noqa: F401
from beit3_mm.models import BEiT3

BACKBONE = dict(type='BEiT3', arch=TINY, img_size=TINY_IMG)


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmdet', 'mmseg', 'root'])
def test_backbone_builds_from_every_scope(scope):
    if scope == 'root':
        from mmengine.registry import MODELS
    else:
        MODELS = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    assert isinstance(MODELS.build(BACKBONE), BEiT3)


def classifier():
    from mmpretrain.registry import MODELS
    return MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(BACKBONE, out_type='avg_featmap',
                          with_language=False),
            head=dict(type='LinearClsHead', num_classes=3, in_channels=32)))


def layer_decay_wrapper(model, **paramwise_cfg):
    """AdamW (lr 1e-3, weight decay 0.05) with parameter groups by
    ``LayerDecayOptimWrapperConstructor`` and ``paramwise_cfg``."""
    return build_optim_wrapper(
        model,
        dict(
            optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
            constructor='LayerDecayOptimWrapperConstructor',
            paramwise_cfg=paramwise_cfg))


def official_depth(name: str, num_layers: int) -> int:
    """unilm/beit3 optim_factory.get_num_layer_for_vit on the official
    names (``beit3.`` where we have ``backbone.``)."""
    name = name.replace('backbone.', 'beit3.', 1)
    if 'embed' in name:
        return 0
    if 'layers.' in name:
        return int(name.split('layers.')[1].split('.')[0]) + 1
    return num_layers + 1


def official_no_decay(name: str, param: torch.Tensor) -> bool:
    skip = {'beit3.encoder.embed_positions.A.weight',
            'beit3.vision_embed.cls_token', 'logit_scale'}
    name = name.replace('backbone.', 'beit3.', 1)
    return param.ndim == 1 or name.endswith('.bias') or name in skip


def test_layer_decay_matches_official():
    model = classifier()
    wrapper = layer_decay_wrapper(model, layer_decay_rate=0.65)
    groups = wrapper.optimizer.param_groups
    where = {id(p): g for g in groups for p in g['params']}
    L = TINY['num_layers']
    trainable = [(n, p) for n, p in model.named_parameters()
                 if p.requires_grad]  # not the frozen mask token
    for name, p in trainable:
        g = where[id(p)]
        scale = 0.65**(L + 1 - official_depth(name, L))
        assert g['lr'] == pytest.approx(1e-3 * scale), name
        wd = 0. if official_no_decay(name, p) else 0.05
        assert g['weight_decay'] == wd, name
    assert len(where) == len(trainable)
    # the group mmengine logs is the head's: lr scale 1
    assert groups[0]['lr'] == pytest.approx(1e-3)


def test_layer_decay_custom_keys_and_errors():
    model = classifier()
    wrapper = layer_decay_wrapper(
        model, layer_decay_rate=0.5,
        custom_keys={'head.': dict(lr_mult=20.)})
    head_w = model.head.fc.weight
    group = next(g for g in wrapper.optimizer.param_groups
                 if any(p is head_w for p in g['params']))
    assert group['lr'] == pytest.approx(2e-2)
    with pytest.raises(KeyError, match='layer_decay_rate'):
        layer_decay_wrapper(model, layer_decay=0.5)
    with pytest.raises(TypeError, match='no BEiT3'):
        layer_decay_wrapper(torch.nn.Linear(2, 2), layer_decay_rate=0.5)


class _Sample:

    def __init__(self, img_path):
        self.metainfo = dict(img_path=img_path)


def test_loss_monitor_stops_on_a_non_finite_loss():
    from types import SimpleNamespace

    from beit3_mm.engine.hooks import LossMonitorHook
    hook = LossMonitorHook()
    batch = dict(
        data_samples=[_Sample('a.png'), _Sample(['b0.png', 'b1.png'])])
    runner = SimpleNamespace(iter=6)
    outputs = dict(loss=torch.tensor(1.5), acc=torch.tensor(50.))
    hook.after_train_iter(runner, 0, batch, outputs)  # finite: goes on
    assert float(outputs['loss']) == 1.5
    for bad in (float('nan'), float('inf')):
        with pytest.raises(FloatingPointError) as e:
            hook.after_train_iter(runner, 0, batch,
                                  dict(loss=torch.tensor(bad)))
        assert 'iteration 7' in str(e.value)
        assert 'a.png, b0.png, b1.png' in str(e.value)


@pytest.mark.slow
def test_training_stops_on_nan_images(tmp_path):
    """std = 0 makes every pixel inf or NaN: tools/train.py stops at the
    first iteration and names the batch's images."""
    import os.path as osp
    import subprocess
    import sys

    from helpers import ROOT

    from beit3_mm.demo import make_classification_demo
    make_classification_demo(str(tmp_path / 'data'), num_train=2, num_val=1)
    proc = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools/train.py'),
        osp.join(ROOT, 'configs/beit3/classification/'
                 'beit3-tiny-p8_1xb32-40e_demo-shapes.py'),
        '--work-dir', str(tmp_path / 'work'), '--cfg-options',
        f'train_dataloader.dataset.data_root={tmp_path}/data',
        f'val_dataloader.dataset.data_root={tmp_path}/data',
        'data_preprocessor.std=[0.0,0.0,0.0]'
    ], capture_output=True, text=True)
    assert proc.returncode != 0
    assert 'FloatingPointError: the loss is nan at iteration 1' in proc.stderr
    assert f'{tmp_path}/data/train/' in proc.stderr
