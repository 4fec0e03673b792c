"""Segmentation: the ViT-Adapter around BEiT-3, the mmseg configs (Mask2Former
and UPerNet), layer decay on a segmentor, inference and the demo."""
import os.path as osp
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import (ROOT, TINY, pretrain_heads, randomize_, run_readme_demo,
                     save_released, torchscale_beit3)
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.model.utils import revert_sync_batchnorm

from beit3_mm.models import BEiT3Adapter, BEiT3Dense
from beit3_mm.models.backbones.beit3_adapter import default_interaction_indexes
from beit3_mm.models.layers.adapter import (ConvFFN, Extractor, Injector,
                                            deform_inputs)
from beit3_mm.models.utils import load_beit3_checkpoint

SEG_CFGS = osp.join(ROOT, 'configs/beit3/segmentation')
DEMO_CFG = osp.join(
    SEG_CFGS, 'beit3-tiny-p16_vit-adapter_mask2former_1xb4-24e_demo-shapes.py')
# Four layers (one per interaction stage), patch 16 as the released models.
ARCH = dict(TINY, num_layers=4, patch_size=16)
IMG = 64


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    """The models here run on tiny tensors, where intra-op threads cost
    more than they give (much more on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def adapter(**kwargs) -> BEiT3Adapter:
    kwargs = dict(dict(arch=ARCH, pretrain_img_size=IMG, conv_inplane=8,
                       norm_cfg=dict(type='BN')), **kwargs)
    model = BEiT3Adapter(**kwargs)
    model.init_weights()
    return model.eval()


# ------------------------------------------------- deformable attention
def bilinear(value: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """``value`` (h, w, C) at pixel coordinates (x, y), zero outside: the
    ``grid_sample(align_corners=False, padding_mode='zeros')`` rule written
    out."""
    h, w, _ = value.shape
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    out = value.new_zeros(value.shape[-1])
    for yy in (y0, y0 + 1):
        for xx in (x0, x0 + 1):
            if 0 <= yy < h and 0 <= xx < w:
                out += (1 - abs(x - xx)) * (1 - abs(y - yy)) * value[yy, xx]
    return out


def direct_deform_attention(attn, query, value, inputs):
    """Multi-scale deformable attention computed point by point (no
    residual), from the module's own projections."""
    B, Q, _ = query.shape
    H, L, P = attn.num_heads, attn.num_levels, attn.num_points
    v = attn.value_proj(value)
    C = v.shape[-1] // H
    v = v.view(B, -1, H, C)
    offsets = attn.sampling_offsets(query).view(B, Q, H, L, P, 2)
    weights = attn.attention_weights(query).view(B, Q, H, L * P).softmax(
        -1).view(B, Q, H, L, P)
    shapes = inputs.spatial_shapes.tolist()
    starts = inputs.level_start_index.tolist()
    ref = inputs.reference_points[0, :, 0]
    out = torch.zeros(B, Q, H, C)
    for b in range(B):
        for q in range(Q):
            for h in range(H):
                for lvl, ((hl, wl), s) in enumerate(zip(shapes, starts)):
                    level = v[b, s:s + hl * wl, h].view(hl, wl, C)
                    for p in range(P):
                        off = offsets[b, q, h, lvl, p]
                        x = (ref[q, 0] + off[0] / wl) * wl - 0.5
                        y = (ref[q, 1] + off[1] / hl) * hl - 0.5
                        out[b, q, h] += weights[b, q, h, lvl, p] * bilinear(
                            level, float(x), float(y))
    return attn.output_proj(out.view(B, Q, H * C))


def randomized(module, seed=0):
    """Random weights, and sampling offsets of a few pixels so that the
    points fall between pixels and outside the maps."""
    randomize_(module, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        bias = module.attn.sampling_offsets.bias
        bias.copy_(2 * torch.randn(bias.shape, generator=gen))
    return module.eval()


@torch.no_grad()
def test_injector_is_query_plus_gated_deform_attention():
    """mmcv's attention adds its identity: the injector must add the query
    exactly once, gated by gamma."""
    D, grid, prior = 16, (4, 3), [(4, 4), (2, 2), (1, 1)]
    inject_inputs, _ = deform_inputs(prior, grid, torch.device('cpu'))
    injector = randomized(Injector(D, 2, 2, 0.5, 0., False))
    g = torch.Generator().manual_seed(2)
    query = torch.randn(2, 12, D, generator=g)
    feat = torch.randn(2, 21, D, generator=g)
    attn = direct_deform_attention(injector.attn, injector.query_norm(query),
                                   injector.feat_norm(feat), inject_inputs)
    torch.testing.assert_close(
        injector(query, feat, inject_inputs),
        query + injector.gamma * attn, rtol=0, atol=1e-5)
    injector.gamma.zero_()
    assert torch.equal(injector(query, feat, inject_inputs), query)


def direct_conv_ffn(ffn: ConvFFN, x, shapes):
    x = ffn.fc1(x)
    levels, start = [], 0
    for h, w in shapes:
        t = x[:, start:start + h * w].transpose(1, 2).unflatten(-1, (h, w))
        start += h * w
        conv = ffn.dwconv.dwconv
        t = F.conv2d(t, conv.weight, conv.bias, padding=1,
                     groups=t.shape[1])
        levels.append(t.flatten(2).transpose(1, 2))
    return ffn.fc2(F.gelu(torch.cat(levels, 1)))


@torch.no_grad()
def test_extractor_is_query_plus_deform_attention_plus_conv_ffn():
    D, grid, prior = 16, (4, 3), [(4, 4), (2, 2), (1, 1)]
    _, extract_inputs = deform_inputs(prior, grid, torch.device('cpu'))
    extractor = randomized(Extractor(D, 2, 2, 1.0, cffn_ratio=0.5), seed=3)
    g = torch.Generator().manual_seed(4)
    query = torch.randn(2, 21, D, generator=g)
    feat = torch.randn(2, 12, D, generator=g)
    q = query + direct_deform_attention(
        extractor.attn, extractor.query_norm(query),
        extractor.feat_norm(feat), extract_inputs)
    expected = q + direct_conv_ffn(extractor.ffn, extractor.ffn_norm(q),
                                   prior)
    torch.testing.assert_close(
        extractor(query, feat, extract_inputs, prior), expected, rtol=0,
        atol=1e-5)


def test_deform_inputs_reference_points():
    inject, extract = deform_inputs([(4, 6), (2, 3), (1, 2)], (2, 3),
                                    torch.device('cpu'))
    assert inject.reference_points.shape == (1, 6, 1, 2)
    torch.testing.assert_close(inject.reference_points[0, 4, 0],
                               torch.tensor([1.5 / 3, 1.5 / 2]))
    assert inject.spatial_shapes.tolist() == [[4, 6], [2, 3], [1, 2]]
    assert inject.level_start_index.tolist() == [0, 24, 30]
    assert extract.reference_points.shape == (1, 32, 1, 2)
    # first point of the stride-16 level
    torch.testing.assert_close(extract.reference_points[0, 24, 0],
                               torch.tensor([0.5 / 3, 0.5 / 2]))
    assert extract.spatial_shapes.tolist() == [[2, 3]]


# ---------------------------------------------------------------- backbone
def stage_outputs(model, images):
    """The image tokens after the last layer of each interaction stage."""
    outs, ends = {}, [4 * i + 3 for i in range(4)]
    hooks = [
        model.encoder.layers[i].register_forward_hook(
            lambda m, args, out, i=i: outs.__setitem__(i, out[0]))
        for i in ends
    ]
    result = model(images)
    for hook in hooks:
        hook.remove()
    return result, [outs[i] for i in ends]


@torch.no_grad()
@pytest.mark.parametrize('window', [0, 2])
def test_zero_gates_leave_backbone_tokens_unchanged(window):
    """With the injector gates at zero the adapter is the identity for the
    backbone: its tokens equal those of the plain BEiT3Dense, whatever the
    rest of the adapter holds; with open gates they differ."""
    arch = dict(ARCH, num_layers=16)
    kwargs = dict(arch=arch, pretrain_img_size=IMG, window_size=window,
                  global_attn_indexes=[3, 7, 11, 15])
    model = adapter(**kwargs)
    randomize_(model)
    for block in model.interactions:
        block.injector.gamma.zero_()
    plain = BEiT3Dense(**kwargs, out_indices=[3, 7, 11, 15]).eval()
    missing, _ = plain.load_state_dict(model.state_dict(), strict=False)
    assert not missing
    images = torch.randn(2, 3, 64, 96)
    maps, tokens = stage_outputs(model, images)
    expected = plain(images)
    for t, e in zip(tokens, expected):
        torch.testing.assert_close(
            t[:, 1:].transpose(1, 2).reshape(e.shape), e, rtol=0, atol=0)
    assert [tuple(m.shape) for m in maps] == [(2, 32, 16, 24), (2, 32, 8, 12),
                                              (2, 32, 4, 6), (2, 32, 2, 3)]

    for block in model.interactions:
        block.injector.gamma.fill_(0.5)
    _, gated = stage_outputs(model, images)
    assert not torch.allclose(gated[0][:, 1:], tokens[0][:, 1:], atol=1e-3)


def test_default_interaction_indexes():
    assert default_interaction_indexes(12) == [[0, 2], [3, 5], [6, 8],
                                               [9, 11]]
    assert default_interaction_indexes(24) == [[0, 5], [6, 11], [12, 17],
                                               [18, 23]]
    assert default_interaction_indexes(4) == [[0, 0], [1, 1], [2, 2], [3, 3]]
    assert default_interaction_indexes(6) == [[0, 0], [1, 2], [3, 3], [4, 5]]
    assert adapter(arch=dict(ARCH, num_layers=12)).interaction_indexes == [
        [0, 2], [3, 5], [6, 8], [9, 11]
    ]


def test_bad_inputs_have_clear_errors():
    model = adapter()
    with pytest.raises(ValueError, match='divide by 32'):
        model(torch.randn(1, 3, 48, 64))
    with pytest.raises(ValueError, match='patch size 16'):
        model(torch.randn(1, 3, 72, 64))
    for bad in ([[0, 1], [2, 2], [3, 3]], [[0, 0], [2, 2], [2, 2], [3, 3]],
                [[0, 0], [1, 1], [2, 2], [3, 4]], [[0, 1], [1, 1], [2, 2],
                                                   [3, 3]], [[0], [1], [2],
                                                             [3]]):
        with pytest.raises(ValueError, match=r'interaction_indexes=.*e\.g\. '
                           r'\[\[0, 0\], \[1, 1\], \[2, 2\], \[3, 3\]\]'):
            adapter(interaction_indexes=bad)
    with pytest.raises(ValueError, match='at least 4 layers'):
        adapter(arch=dict(ARCH, num_layers=3))


def test_with_cp_same_grads():
    images = torch.randn(1, 3, 64, 64)
    grads = []
    for with_cp in (False, True):
        torch.manual_seed(0)
        model = adapter(with_cp=with_cp, injector_init_values=0.1).train()
        randomize_(model)
        sum(m.square().sum() for m in model(images)).backward()
        grads.append([
            p.grad for p in (
                model.encoder.layers[0].self_attn.q_proj.A.weight,
                model.interactions[0].injector.attn.value_proj.weight,
                model.interactions[3].extra_extractors[1].ffn.fc1.weight)
        ])
    for a, b in zip(*grads):
        assert a is not None and a.abs().sum() > 0
        torch.testing.assert_close(a, b)


@pytest.fixture(scope='module')
def released(tmp_path_factory):
    ref = torchscale_beit3(ARCH, 32, output_norm=True)
    path = tmp_path_factory.mktemp('ckpt') / 'beit3_tiny_pt.pth'
    return ref, save_released(path, ref.state_dict(),
                              pretrain_heads(ARCH['embed_dims']))


def test_released_pretraining_file_loads_into_adapter(released):
    """Nothing of the backbone is missing; the adapter is new, logged as
    such, and initialised as the reference does."""
    ref, path = released
    model = adapter(init_cfg=dict(type='Pretrained', checkpoint=path))
    plain = BEiT3Dense(arch=ARCH, pretrain_img_size=IMG,
                       init_cfg=dict(type='Pretrained', checkpoint=path))
    plain.init_weights()
    for k, v in plain.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert torch.equal(model.encoder.layers[3].ffn.A.fc1.weight,
                       ref.encoder.layers[3].ffn.A.fc1.weight)
    lines = load_beit3_checkpoint(model, path)
    new = next(line for line in lines if line.startswith('new in this'))
    for root in ('spm.', 'interactions.', 'level_embed', 'up.', 'out_norms.'):
        assert root in new
    assert 'encoder' not in new and 'vision_embed' not in new
    # the adapter's own init, not the BEiT init of the backbone
    attn = model.interactions[0].injector.attn
    assert torch.equal(attn.attention_weights.weight,
                       torch.zeros_like(attn.attention_weights.weight))
    assert attn.sampling_offsets.bias.abs().max() > 1
    assert torch.equal(model.interactions[0].injector.gamma,
                       torch.zeros(ARCH['embed_dims']))


# ----------------------------------------------------------------- configs
def seg_sample(h, w, num_classes=150):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    sample = SegDataSample(metainfo=dict(
        img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
    labels = torch.zeros(1, h, w, dtype=torch.long)
    labels[:, h // 4:h // 2, w // 4:] = 3 % num_classes
    labels[:, h // 2:, :w // 3] = 7 % num_classes
    labels[:, :2] = 255
    sample.gt_sem_seg = PixelData(data=labels)
    return sample


def build_segmentor(cfg):
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules()
    MMLogger.get_instance('mmengine', log_level='WARNING')
    cfg.model.backbone.init_cfg = None
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.init_weights()
    return model


def narrow_large(cfg, width=128):
    """The large config at a narrower width (depth, stages, queries and
    heads kept): its 1024-wide Mask2Former alone is too slow for a CPU
    test."""
    cfg.model.backbone.arch = dict(
        BEiT3Adapter.arch_zoo['large'],
        embed_dims=width,
        num_heads=4,
        feedforward_channels=2 * width)
    head = cfg.model.decode_head
    head.update(in_channels=[width] * 4, feat_channels=width,
                out_channels=width)
    head.positional_encoding.num_feats = width // 2
    decoder = head.pixel_decoder
    decoder.positional_encoding.num_feats = width // 2
    decoder.encoder.layer_cfg.self_attn_cfg.embed_dims = width
    layer = head.transformer_decoder.layer_cfg
    for attn in (layer.self_attn_cfg, layer.cross_attn_cfg):
        attn.embed_dims = width
    for ffn in (decoder.encoder.layer_cfg.ffn_cfg, layer.ffn_cfg):
        ffn.update(embed_dims=width, feedforward_channels=2 * width)


CONFIGS = [
    'beit3-base-p16_vit-adapter_mask2former_8xb2-160k_ade20k-512x512',
    'beit3-large-p16_vit-adapter_mask2former_8xb2-80k_ade20k-896x896',
    'beit3-base-p16_upernet_8xb2-160k_ade20k-640x640',
    'beit3-tiny-p16_vit-adapter_mask2former_1xb4-24e_demo-shapes',
]


@pytest.mark.parametrize('name', CONFIGS)
def test_config_loss_step(name):
    """Each config builds, groups its parameters by layer decay (adapter
    and heads at the top depth) and trains a step on a small image."""
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(osp.join(SEG_CFGS, name + '.py'))
    if 'large' in name:
        narrow_large(cfg)
    model = build_segmentor(cfg)
    backbone = model.backbone
    L = backbone.num_layers
    if 'large' in name:
        assert L == 24 and backbone.interaction_indexes[-1] == [18, 23]
        assert all(layer.with_cp for layer in backbone.encoder.layers)
        assert model.decode_head.num_queries == 200
    wrapper = build_optim_wrapper(
        model, dict(cfg.optim_wrapper, type='OptimWrapper'))  # AMP: GPU
    lr = cfg.optim_wrapper.optimizer.lr
    decay = cfg.optim_wrapper.paramwise_cfg.layer_decay_rate
    groups = {id(p): g for g in wrapper.optimizer.param_groups
              for p in g['params']}
    assert groups[id(backbone.vision_embed.proj.weight)]['lr'] == \
        pytest.approx(lr * decay**(L + 1))
    assert groups[id(backbone.encoder.layers[0].ffn.A.fc1.weight)]['lr'] == \
        pytest.approx(lr * decay**L)
    head_param = next(model.decode_head.parameters())
    assert groups[id(head_param)]['lr'] == pytest.approx(lr)
    if isinstance(backbone, BEiT3Adapter):
        for p in (backbone.spm.conv2.conv.weight, backbone.level_embed,
                  backbone.interactions[0].injector.gamma):
            assert groups[id(p)]['lr'] == pytest.approx(lr)
        assert groups[id(backbone.level_embed)]['weight_decay'] == 0
        assert groups[id(model.decode_head.query_embed.weight)][
            'weight_decay'] == 0

    num_classes = model.decode_head.num_classes
    data = dict(  # two images: BN needs more than one value per channel
        inputs=[
            torch.randint(0, 255, (3, 64, 96), dtype=torch.uint8)
            for _ in range(2)
        ],
        data_samples=[seg_sample(64, 96, num_classes) for _ in range(2)])
    cfg_size = model.data_preprocessor.size
    model.data_preprocessor.size = None  # pads to the crop size otherwise
    model.data_preprocessor.size_divisor = 32
    before = backbone.encoder.layers[0].ffn.A.fc1.weight.clone()
    losses = model.train_step(data, wrapper)
    assert torch.isfinite(losses['loss'])
    assert not torch.equal(before, backbone.encoder.layers[0].ffn.A.fc1.weight)
    assert cfg_size == cfg.crop_size


def test_slide_inference_on_an_image_larger_than_the_crop():
    cfg = Config.fromfile(DEMO_CFG)
    cfg.model.test_cfg = dict(mode='slide', crop_size=(64, 64),
                              stride=(32, 32))
    model = build_segmentor(cfg).eval()
    seen = []
    model.backbone.register_forward_hook(
        lambda m, args, out: seen.append(tuple(args[0].shape[-2:])))
    data = dict(
        inputs=[torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8)],
        data_samples=[seg_sample(96, 128, 4)])
    with torch.no_grad():
        pred = model.test_step(data)[0]
        assert seen == [(64, 64)] * 6  # 2 x 3 crops
        assert pred.pred_sem_seg.data.shape == (1, 96, 128)
        # the top-left 32 x 32 is seen by the first crop only
        batch = model.data_preprocessor(data, False)
        first = model.encode_decode(
            batch['inputs'][..., :64, :64],
            [s.metainfo for s in batch['data_samples']])
    torch.testing.assert_close(pred.seg_logits.data[:, :32, :32],
                               first[0, :, :32, :32])


def test_seg_inferencer_with_our_config(tmp_path):
    """mmseg's MMSegInferencer builds our config and reads our checkpoint.
    """
    from mmseg.apis import MMSegInferencer

    from beit3_mm.demo import SEGMENTATION_CLASSES, make_segmentation_demo
    make_segmentation_demo(str(tmp_path / 'data'), num_train=1, num_val=1)
    cfg = Config.fromfile(DEMO_CFG)
    model = build_segmentor(cfg)
    ckpt = tmp_path / 'demo.pth'
    torch.save(
        dict(state_dict=model.state_dict(),
             meta=dict(dataset_meta=dict(classes=cfg.classes,
                                         palette=cfg.palette))), ckpt)
    inferencer = MMSegInferencer(model=DEMO_CFG, weights=str(ckpt),
                                 device='cpu')
    image = str(tmp_path / 'data/images/validation/000000.jpg')
    result = inferencer(image, return_datasamples=True)
    assert result.pred_sem_seg.data.shape == (1, 64, 64)
    assert inferencer.model.dataset_meta['classes'] == SEGMENTATION_CLASSES
    out = inferencer(image, out_dir=str(tmp_path / 'vis'))
    assert out['predictions'].shape == (64, 64)


def test_demo_set_matches_the_pixels(tmp_path):
    from PIL import Image

    from beit3_mm.demo import make_segmentation_demo
    classes = make_segmentation_demo(str(tmp_path), num_train=4, num_val=2)
    assert classes == ('background', 'circle', 'square', 'triangle')
    for split, n in (('training', 4), ('validation', 2)):
        for i in range(n):
            img = np.asarray(Image.open(
                tmp_path / f'images/{split}/{i:06d}.jpg'), dtype=np.int32)
            labels = np.asarray(
                Image.open(tmp_path / f'annotations/{split}/{i:06d}.png'))
            assert img.shape == (64, 64, 3) and labels.shape == (64, 64)
            assert set(np.unique(labels)) <= {0, 1, 2, 3, 4}
            assert (labels >= 2).any() and (labels == 0).any()
            # shapes are bright, the background is dark (JPEG aside)
            assert img[labels >= 2].max(-1).mean() > 110
            assert img[labels == 1].max(-1).mean() < 70
    again = tmp_path / 'again'
    make_segmentation_demo(str(again), num_train=4, num_val=2)
    assert (again / 'annotations/training/000003.png').read_bytes() == (
        tmp_path / 'annotations/training/000003.png').read_bytes()


@pytest.mark.slow
def test_demo_trains_and_reaches_miou(tmp_path):
    """The README's demo: make the data, train with tools/train.py (24
    epochs of 16 iterations), test with tools/test.py on the training
    images; mIoU far above chance (~22: background everywhere). About two
    minutes on two busy cores."""
    log = run_readme_demo('segmentation', DEMO_CFG, tmp_path)
    miou = float(re.findall(r'mIoU: ([\d.]+)', log)[-1])
    assert miou > 80, log[-2000:]
