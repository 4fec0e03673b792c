"""Image classification: the released in1k file, converted, gives the
official logits; the recipe configs build and train a step."""
import os.path as osp
import subprocess
import sys

import pytest
import torch
from helpers import (ROOT, TINY, TINY_IMG, VOCAB, build_model,
                     official_resize, save_released, torchscale_beit3)
from mmengine.config import Config
from mmengine.runner import load_checkpoint

import beit3_mm  # noqa: F401

CFG_DIR = osp.join(ROOT, 'configs/beit3/classification')
BASE_CFG = osp.join(CFG_DIR, 'beit3-base-p16_8xb128-coslr-50e_in1k.py')


def in1k_heads(g: torch.Generator) -> dict:
    """Random heads of a released in1k file: ``fc_norm``, a 5-class
    ``head``."""
    return {
        'fc_norm.weight': 1 + 0.1 * torch.randn(32, generator=g),
        'fc_norm.bias': 0.1 * torch.randn(32, generator=g),
        'head.weight': torch.randn(5, 32, generator=g),
        'head.bias': torch.randn(5, generator=g),
    }


def test_converted_in1k_file_gives_official_logits(tmp_path):
    ref = torchscale_beit3(TINY, TINY_IMG, output_norm=False)
    g = torch.Generator().manual_seed(3)
    heads = in1k_heads(g)
    src = save_released(tmp_path / 'in1k.pth', ref.state_dict(), heads)
    dst = tmp_path / 'in1k_mm.pth'
    out = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools/model_converters/'
                                  'beit3_to_mm.py'), src, str(dst)],
        capture_output=True, text=True, check=True).stdout
    assert 'in1k file' in out and 'dropped' in out

    cfg = Config.fromfile(BASE_CFG)
    cfg.model.backbone.update(arch=TINY, img_size=TINY_IMG, init_cfg=None)
    cfg.model.head.update(num_classes=5, in_channels=32)
    model = build_model(cfg).eval()
    ckpt = load_checkpoint(model, str(dst), strict=True)
    assert ckpt['meta']['beit3_kind'] == 'in1k'

    images = torch.randn(3, 3, TINY_IMG, TINY_IMG, generator=g)
    with torch.no_grad():
        tokens = ref(visual_tokens=images)['encoder_out']
        pooled = torch.nn.functional.layer_norm(
            tokens[:, 1:].mean(1), (32, ), heads['fc_norm.weight'],
            heads['fc_norm.bias'], eps=1e-5)
        expected = pooled @ heads['head.weight'].T + heads['head.bias']
        logits = model(images, mode='tensor')
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)


def test_converted_file_loads_at_any_resolution(tmp_path):
    """The converter keeps the released resolution; mmengine's
    load_checkpoint into a model of another input size resizes the table
    with the official formula (the backbone's load_state_dict pre-hook)."""
    from beit3_mm.models import BEiT3
    ref = torchscale_beit3(TINY, TINY_IMG, output_norm=True)
    heads = {
        'vision_head.weight': torch.randn(32, 32),
        'language_head.weight': torch.randn(32, 32),
        'logit_scale': torch.tensor(2.6),
    }
    src = save_released(tmp_path / 'itc.pth', ref.state_dict(), heads,
                        official_training=True)
    sys.path.insert(0, osp.join(ROOT, 'tools/model_converters'))
    try:
        from beit3_to_mm import convert
    finally:
        sys.path.pop(0)
    from beit3_mm.models.utils import model_state_dict
    from beit3_mm.utils import read_checkpoint
    kind, state, dropped = convert(model_state_dict(read_checkpoint(src), src))
    assert kind == 'retrieval' and not dropped
    table = ref.state_dict()['encoder.embed_positions.A.weight']
    assert torch.equal(state['backbone.encoder.embed_positions.A.weight'],
                       table)
    assert torch.equal(state['logit_scale'], heads['logit_scale'])
    assert len(state) == len(ref.state_dict()) + 3

    dst = str(tmp_path / 'itc_mm.pth')
    torch.save(dict(state_dict=state), dst)
    model = BEiT3(arch=TINY, img_size=48, vocab_size=VOCAB, output_norm=True)
    load_checkpoint(model, dst, revise_keys=[(r'^backbone\.', '')])
    torch.testing.assert_close(model.encoder.embed_positions.A.weight,
                               official_resize(table, 6), rtol=0, atol=0)


@pytest.mark.parametrize('name', [
    'beit3-base-p16_8xb128-coslr-50e_in1k.py',
    'beit3-large-p16_8xb128-coslr-50e_in1k.py',
])
def test_recipe_configs(name):
    cfg = Config.fromfile(osp.join(CFG_DIR, name))
    large = 'large' in name
    assert cfg.optim_wrapper.optimizer.lr == (2e-4 if large else 7e-4)
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == (
        0.8 if large else 0.65)
    assert cfg.model.backbone.drop_path_rate == (0.25 if large else 0.15)
    assert cfg.train_cfg.max_epochs == 50
    assert cfg.param_scheduler[0].end == 5
    assert cfg.train_dataloader.batch_size == 128
    assert cfg.test_dataloader.dataset.pipeline[1].scale == 224


def test_base_recipe_runs_a_training_step():
    """The full base model with the recipe's optimizer, mixup/cutmix and
    label smoothing: one loss step on the CPU."""
    from mmpretrain.structures import DataSample
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(BASE_CFG)
    cfg.model.backbone.init_cfg = None
    model = build_model(cfg)
    model.init_weights()
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    data = dict(
        inputs=[torch.randint(0, 255, (3, 224, 224), dtype=torch.uint8)
                for _ in range(2)],
        data_samples=[DataSample().set_gt_label(i) for i in (3, 999)])
    before = model.backbone.encoder.layers[5].ffn.A.fc1.weight.clone()
    losses = model.train_step(data, wrapper)
    assert torch.isfinite(losses['loss'])
    assert not torch.equal(before, model.backbone.encoder.layers[5].ffn.A
                           .fc1.weight)


def test_in1k_logits_match_timm(tmp_path):
    """timm's BEiT-3 classifier (a second reference, built from the same
    released-layout file) gives our logits."""
    from functools import partial

    from timm.models.vision_transformer import (VisionTransformer,
                                                checkpoint_filter_fn)
    ref = torchscale_beit3(TINY, TINY_IMG, output_norm=False, seed=5)
    g = torch.Generator().manual_seed(4)
    heads = in1k_heads(g)
    src = save_released(tmp_path / 'in1k.pth', ref.state_dict(), heads)
    timm_model = VisionTransformer(
        img_size=TINY_IMG, patch_size=8, embed_dim=32, depth=2, num_heads=4,
        mlp_ratio=2, scale_attn_norm=True, scale_mlp_norm=True,
        class_token=True, global_pool='avg', num_classes=5,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-5)).eval()
    timm_model.load_state_dict(
        checkpoint_filter_fn(torch.load(src)['model'], timm_model))

    cfg = Config.fromfile(BASE_CFG)
    cfg.model.backbone.update(
        arch=TINY, img_size=TINY_IMG,
        init_cfg=dict(type='Pretrained', checkpoint=src))
    cfg.model.head.update(num_classes=5, in_channels=32)
    model = build_model(cfg).eval()
    model.init_weights()
    model.head.fc.weight.data.copy_(heads['head.weight'])
    model.head.fc.bias.data.copy_(heads['head.bias'])
    images = torch.randn(2, 3, TINY_IMG, TINY_IMG, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(
            model(images, mode='tensor'), timm_model(images), rtol=0,
            atol=1e-5)
