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
    wrapper = build_optim_wrapper(
        model,
        dict(
            optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
            constructor='LayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(layer_decay_rate=0.65)))
    groups = wrapper.optimizer.param_groups
    where = {id(p): g for g in groups for p in g['params']}
    L = TINY['num_layers']
    for name, p in model.named_parameters():
        g = where[id(p)]
        scale = 0.65**(L + 1 - official_depth(name, L))
        assert g['lr'] == pytest.approx(1e-3 * scale), name
        wd = 0. if official_no_decay(name, p) else 0.05
        assert g['weight_decay'] == wd, name
    assert len(where) == len(list(model.parameters()))
    # the group mmengine logs is the head's: lr scale 1
    assert groups[0]['lr'] == pytest.approx(1e-3)


def test_layer_decay_custom_keys_and_errors():
    model = classifier()
    wrapper = build_optim_wrapper(
        model,
        dict(
            optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
            constructor='LayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(
                layer_decay_rate=0.5,
                custom_keys={'head.': dict(lr_mult=20.)})))
    head_w = model.head.fc.weight
    group = next(g for g in wrapper.optimizer.param_groups
                 if any(p is head_w for p in g['params']))
    assert group['lr'] == pytest.approx(2e-2)
    with pytest.raises(KeyError, match='layer_decay_rate'):
        build_optim_wrapper(
            model,
            dict(
                optimizer=dict(type='AdamW', lr=1e-3),
                constructor='LayerDecayOptimWrapperConstructor',
                paramwise_cfg=dict(layer_decay=0.5)))
    with pytest.raises(TypeError, match='no BEiT3'):
        build_optim_wrapper(
            torch.nn.Linear(2, 2),
            dict(
                optimizer=dict(type='AdamW', lr=1e-3),
                constructor='LayerDecayOptimWrapperConstructor',
                paramwise_cfg=dict(layer_decay_rate=0.5)))
