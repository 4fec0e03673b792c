"""The giant configs: each builds its backbone (on the meta device) with
the giant arch, whose parameter count follows the arch's formula, and
trains under a sharding strategy with activation checkpointing."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config

import beit3_mm  # noqa: F401 (registers the backbones)
from beit3_mm.registry import MODELS
from helpers import ROOT, official_vqkd_state

CONFIGS = sorted(
    osp.relpath(p, ROOT) for p in glob.glob(
        osp.join(ROOT, 'configs/beit3/**/beit3-giant-*.py'), recursive=True))
GIANT = dict(embed_dims=1408, num_layers=40, num_heads=16,
             feedforward_channels=6144)
TASKS = ('pretrain', 'classification', 'detection', 'segmentation', 'vqa',
         'retrieval')
# parameters that are not BEiT-3's own: ViT-Adapter, relative positions
EXTRA = ('spm.', 'interactions.', 'level_embed', 'up.', 'out_norms.',
         'rel_pos')


def backbone_params(arch: dict, img_size: int, with_language: bool,
                    output_norm: bool, fc_norm: bool, vocab: int = 64010,
                    text_positions: int = 1024) -> int:
    """BEiT-3's parameter count from its arch (multiway layers as in the
    released code: every projection, norm and FFN has a vision and, with
    language, a language expert)."""
    D, F, P = (arch['embed_dims'], arch['feedforward_channels'],
               arch['patch_size'])
    experts = 2 if with_language else 1
    # q, k, v, out projections, 4 LayerNorms (2 of D around attention and
    # FFN, the sub-LNs of D and F), fc1, fc2
    layer = 4 * (D * D + D) + 2 * D * F + F + D + 3 * 2 * D + 2 * F
    grid = (img_size // P)**2
    vision = 3 * P * P * D + D + 2 * D + (grid + 3) * D  # proj, cls, mask
    text = (vocab + text_positions) * D if with_language else 0
    norms = experts * 2 * D * output_norm + 2 * D * fc_norm
    return experts * layer * arch['num_layers'] + vision + text + norms


def test_every_task_has_a_giant_config():
    assert [t for t in TASKS if not any(f'/{t}/' in p for p in CONFIGS)] == []


@pytest.mark.parametrize('path', CONFIGS)
def test_giant_config_builds_the_giant(path):
    cfg = Config.fromfile(osp.join(ROOT, path))
    assert cfg.runner_type == 'FlexibleRunner'
    assert cfg.strategy.type in ('BEiT3FSDPStrategy', 'BEiT3DeepSpeedStrategy')
    if cfg.strategy.type == 'BEiT3DeepSpeedStrategy':
        assert cfg.strategy.zero_optimization.stage in (2, 3)
    else:
        assert cfg.strategy.model_wrapper.sharding_strategy == 'FULL_SHARD'
    with torch.device('meta'):
        backbone = MODELS.build(cfg.model.backbone)
    assert all(p.is_meta for p in backbone.parameters())
    arch = backbone.arch_settings
    assert {k: arch[k] for k in GIANT} == GIANT
    # patch 14 unless the detector's pyramid needs stride 16 (see there)
    assert arch['patch_size'] == (16 if '/detection/' in path else 14)
    assert backbone.encoder.layers[0].with_cp
    own = sum(p.numel() for n, p in backbone.named_parameters()
              if not any(e in n for e in EXTRA))
    expected = backbone_params(
        arch, backbone.img_size[0], backbone.with_language,
        backbone.output_norm, backbone.fc_norm is not None)
    assert own == expected, (path, own, expected)
    assert own > (1.9e9 if backbone.with_language else 1.0e9)


def test_formula_matches_torchscale_giant():
    """The formula (and so our giant) against the official multiway code."""
    from helpers import torchscale_beit3
    arch = dict(GIANT, patch_size=14)
    with torch.device('meta'):
        ref = torchscale_beit3(arch, 224, vocab_size=64010, output_norm=False)
    assert sum(p.numel() for p in ref.parameters()) == backbone_params(
        arch, 224, with_language=True, output_norm=False, fc_norm=False)


PRETRAIN = ('configs/beit3/pretrain/'
            'beit3-giant-p14_pretrain_64xb96-1m_mixed-224px.py')


@pytest.mark.slow
def test_giant_pretraining_step_at_reduced_depth(tmp_path):
    """The giant pretraining config's model with 2 of its 40 layers, 64
    text rows (of 64010) and random weights (a random tokenizer file too):
    one step of its optim wrapper on 2 images, 2 texts and 2 pairs at
    224 px. The tokenizer (patch 16) sees 256 px and gives one code per
    14-px student patch (16 x 16); every loss is finite and both experts
    of each layer get gradients."""
    import random

    from mmengine.optim import build_optim_wrapper
    from mmpretrain.structures import DataSample

    from beit3_mm.demo.shapes import train_demo_tokenizer
    cfg = Config.fromfile(osp.join(ROOT, PRETRAIN))
    rng = random.Random(0)
    words = 'a red green circle square is big small left of the'.split()
    texts = [' '.join(rng.choice(words) for _ in range(12))
             for _ in range(50)]
    model_cfg = cfg.model.to_dict()
    model_cfg['backbone'].update(  # the text rows the tokenizer needs
        arch=dict(MODELS.get('BEiT3').arch_zoo['giant'], num_layers=2),
        vocab_size=64)
    vqkd = str(tmp_path / 'vqkd.pth')  # random, in the released layout
    torch.save({'model': official_vqkd_state(
        MODELS.get('BEiT3').arch_zoo['base'], 224, 8192, 32)}, vqkd)
    model_cfg['target_generator']['init_cfg']['checkpoint'] = vqkd
    model_cfg['tokenizer']['name_or_path'] = train_demo_tokenizer(
        texts, str(tmp_path / 't.spm'), vocab_size=30)
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    model.train()
    optim = build_optim_wrapper(model, cfg.optim_wrapper)

    images = iter(torch.randint(0, 256, (4, 3, 224, 224), dtype=torch.uint8))
    kinds = ['image', 'image', 'text', 'text', 'pair', 'pair']
    data = dict(
        inputs=[None if k == 'text' else next(images) for k in kinds],
        data_samples=[DataSample(source=k, **({} if k == 'image' else dict(
            text=texts[i]))) for i, k in enumerate(kinds)])
    batch = model.data_preprocessor(data, True)
    seen = {}
    for name in ('tokenizer_view', 'visual_tokens'):  # record their outputs
        setattr(model, name, lambda x, f=getattr(model, name), n=name:
                seen.setdefault(n, f(x)))
    layer = model.backbone.encoder.layers[1]
    before = {n: p.detach().clone() for n, p in layer.named_parameters()}
    losses = model(**batch, mode='loss')  # train_step, grads kept
    assert {k for k in losses if k.startswith('loss_')} == {
        'loss_mim_image', 'loss_mlm_text', 'loss_mim_pair', 'loss_mlm_pair'}
    assert all(torch.isfinite(v) for v in losses.values())
    assert seen['tokenizer_view'].shape == (4, 3, 256, 256)
    assert seen['visual_tokens'].shape == (4, 16 * 16)
    optim.backward(model.parse_losses(losses)[0])
    for expert in ('.A.', '.B.'):  # vision, language
        grads = {n: p.grad for n, p in layer.named_parameters()
                 if expert in n}
        assert grads and all(g is not None and g.any()
                             for g in grads.values()), expert
    optim.step()
    assert all(not torch.equal(p, before[n])
               for n, p in layer.named_parameters())
