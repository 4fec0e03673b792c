"""Detection: the dense BEiT-3 backbone, window attention, SimpleFPN, the
mmdet configs and layer decay on a detector."""
import os.path as osp
import re

import pytest
import torch
import torch.nn.functional as F
from helpers import (ROOT, TINY, TINY_IMG, VOCAB, pretrain_heads, randomize_,
                     run_readme_demo, save_released, torchscale_beit3)
from mmengine.config import Config
from mmengine.logging import MMLogger

from beit3_mm.models import BEiT3, BEiT3Adapter, BEiT3Dense, SimpleFPN
from beit3_mm.models.layers import (DecomposedRelPos, MultiwayAttention,
                                    decomposed_rel_pos_bias, window_attention)

DET_CFGS = osp.join(ROOT, 'configs/beit3/detection')
DEMO_CFG = osp.join(
    DET_CFGS, 'beit3-tiny-p16_mask-rcnn_simplefpn_1xb4-12e_demo-shapes.py')


@pytest.fixture(scope='module')
def released(tmp_path_factory):
    ref = torchscale_beit3(TINY, TINY_IMG, output_norm=True)
    path = tmp_path_factory.mktemp('ckpt') / 'beit3_tiny_pt.pth'
    return ref, save_released(path, ref.state_dict(),
                              pretrain_heads(TINY['embed_dims']))


def dense(path=None, **kwargs):
    init = dict(type='Pretrained', checkpoint=path) if path else None
    model = BEiT3Dense(arch=TINY, pretrain_img_size=TINY_IMG, init_cfg=init,
                       **kwargs)
    model.init_weights()
    return model.eval()


@torch.no_grad()
def test_global_dense_equals_beit3_image_path(released):
    """Loaded from a released pretraining file with nothing missing, the
    dense backbone (global attention) gives the reference's tokens."""
    ref, path = released
    model = dense(path, window_size=0)
    assert not any('.B.' in k for k in model.state_dict())
    images = torch.randn(2, 3, TINY_IMG, TINY_IMG)
    fmap = model(images)[0]
    tokens = ref(visual_tokens=images)['encoder_out']
    # the reference applies its output norm; ours has none: undo by
    # comparing with the reference's last layer before that norm
    ours_full = BEiT3(arch=TINY, img_size=TINY_IMG, vocab_size=VOCAB,
                      out_type='raw', init_cfg=dict(type='Pretrained',
                                                    checkpoint=path))
    ours_full.init_weights()
    raw = ours_full.eval().encode(images=images)
    expected = raw[:, 1:].transpose(1, 2).reshape(2, 32, 4, 4)
    torch.testing.assert_close(fmap, expected, rtol=0, atol=1e-5)
    normed = F.layer_norm(raw, (32, ),
                          ref.encoder.layer_norm.A.weight,
                          ref.encoder.layer_norm.A.bias)
    torch.testing.assert_close(normed, tokens, rtol=0, atol=1e-5)


@torch.no_grad()
def test_dense_backbone_from_another_tasks_mm_checkpoint(tmp_path):
    """A beit3-mm checkpoint of another task (``backbone.*`` with a
    classifier's fc_norm or an adapter's modules, ``head.*``) initialises
    the dense backbone: those modules and the head are left out, the
    tokens are the source backbone's."""
    cls_backbone = BEiT3(arch=TINY, img_size=TINY_IMG, with_language=False,
                         out_type='avg_featmap')
    randomize_(cls_backbone, seed=3)
    state = {f'backbone.{k}': v for k, v in cls_backbone.state_dict().items()}
    state['head.fc.weight'] = torch.randn(4, TINY['embed_dims'])
    state['backbone.level_embed'] = torch.randn(3, TINY['embed_dims'])
    state['backbone.spm.stem.0.weight'] = torch.randn(8, 3, 3, 3)
    path = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(state_dict=state, meta=dict(epoch=1)), path)
    model = dense(path, window_size=0)
    images = torch.randn(2, 3, TINY_IMG, TINY_IMG)
    cls_backbone.out_type = 'featmap'
    torch.testing.assert_close(
        model(images)[0], cls_backbone.eval()(images)[0], rtol=0, atol=1e-6)


@torch.no_grad()
def test_any_size_resizes_positions_on_the_fly(released):
    _, path = released
    model = dense(path, window_size=0)
    fixed = BEiT3(arch=TINY, img_size=(48, 64), vocab_size=VOCAB,
                  with_language=False, out_type='featmap',
                  init_cfg=dict(type='Pretrained', checkpoint=path))
    fixed.init_weights()
    images = torch.randn(1, 3, 48, 64)
    torch.testing.assert_close(
        model(images)[0], fixed.eval()(images)[0], rtol=0, atol=1e-5)
    assert model(images)[0].shape == (1, 32, 6, 8)


def direct_rel_pos_bias(q, pos, table_h, table_w):
    """q_i . Rh[r_i - r_j + Sh - 1] + q_i . Rw[c_i - c_j + Sw - 1] for the
    tokens at (row, col) ``pos``, one pair at a time."""
    Sh, Sw = (table_h.shape[0] + 1) // 2, (table_w.shape[0] + 1) // 2
    n = len(pos)
    bias = q.new_zeros(*q.shape[:2], n, n)
    for i, (ri, ci) in enumerate(pos):
        for j, (rj, cj) in enumerate(pos):
            bias[:, :, i, j] = (q[:, :, i] @ table_h[ri - rj + Sh - 1] +
                                q[:, :, i] @ table_w[ci - cj + Sw - 1])
    return bias


def direct_window_attention(q, k, v, grid, ws, num_prefix, tables=None):
    """Each window's valid tokens attend to each other, one window at a
    time (with relative position terms from ``tables``, offsets within the
    window); prefix tokens attend to themselves."""
    B, H, T, C = q.shape
    h, w = grid
    out = torch.empty_like(q)
    pre = slice(0, num_prefix)
    out[:, :, pre] = torch.softmax(
        q[:, :, pre] @ k[:, :, pre].transpose(-1, -2) * C**-0.5,
        -1) @ v[:, :, pre]
    for r0 in range(0, h, ws):
        for c0 in range(0, w, ws):
            idx = torch.tensor([
                num_prefix + r * w + c
                for r in range(r0, min(r0 + ws, h))
                for c in range(c0, min(c0 + ws, w))
            ])
            qi, ki, vi = q[:, :, idx], k[:, :, idx], v[:, :, idx]
            logits = qi @ ki.transpose(-1, -2) * C**-0.5
            if tables is not None:
                pos = [(r - r0, c - c0) for r in range(r0, min(r0 + ws, h))
                       for c in range(c0, min(c0 + ws, w))]
                logits = logits + direct_rel_pos_bias(qi, pos, *tables)
            attn = torch.softmax(logits, -1)
            out[:, :, idx] = attn @ vi
    return out


@pytest.mark.parametrize('grid,ws', [((6, 4), 2), ((5, 7), 3), ((4, 4), 4)])
def test_window_attention_matches_direct(grid, ws):
    g = torch.Generator().manual_seed(0)
    T = 1 + grid[0] * grid[1]
    q, k, v = (torch.randn(2, 3, T, 8, generator=g) for _ in range(3))
    torch.testing.assert_close(
        window_attention(q, k, v, grid, ws, num_prefix=1),
        direct_window_attention(q, k, v, grid, ws, 1), rtol=0, atol=1e-5)


def test_decomposed_rel_pos_matches_timm():
    """The bias equals timm's ViTDet/SAM ``get_decomposed_rel_pos_bias``,
    with tables of the grid's length and with tables it resizes."""
    from timm.models.vision_transformer_sam import \
        get_decomposed_rel_pos_bias
    g = torch.Generator().manual_seed(0)
    grid = (3, 5)
    q = torch.randn(2, 4, 15, 8, generator=g)
    for lengths in ((5, 9), (7, 4)):
        th, tw = (torch.randn(n, 8, generator=g) for n in lengths)
        expected = get_decomposed_rel_pos_bias(
            q.reshape(8, 15, 8), th, tw, grid, grid).reshape(2, 4, 15, 15)
        torch.testing.assert_close(
            decomposed_rel_pos_bias(q, grid, th, tw), expected)
    th, tw = torch.randn(5, 8, generator=g), torch.randn(9, 8, generator=g)
    pos = [(r, c) for r in range(3) for c in range(5)]
    torch.testing.assert_close(
        decomposed_rel_pos_bias(q, grid, th, tw),
        direct_rel_pos_bias(q, pos, th, tw))


@pytest.mark.parametrize('grid,ws', [((6, 4), 2), ((5, 7), 3)])
def test_window_attention_with_rel_pos_matches_direct(grid, ws):
    """Relative offsets are taken within the window, also in the windows
    cut by the grid's edge."""
    g = torch.Generator().manual_seed(0)
    T = 1 + grid[0] * grid[1]
    q, k, v = (torch.randn(2, 3, T, 8, generator=g) for _ in range(3))
    rel_pos = DecomposedRelPos((ws, ws), 8)
    with torch.no_grad():
        rel_pos.h.normal_(generator=g)
        rel_pos.w.normal_(generator=g)
        torch.testing.assert_close(
            window_attention(q, k, v, grid, ws, 1, rel_pos),
            direct_window_attention(q, k, v, grid, ws, 1,
                                    (rel_pos.h, rel_pos.w)),
            rtol=0, atol=1e-5)


def test_global_attention_with_rel_pos_matches_direct():
    """Global layers: terms between patches, none for the CLS token; the
    tables get the gradients of the direct computation."""
    grid = (2, 3)
    attn = MultiwayAttention(16, 2, with_language=False, rel_pos_size=grid)
    randomize_(attn)
    x = torch.randn(2, 7, 16)

    def direct():
        def heads(t):
            return t.view(2, 7, 2, 8).transpose(1, 2)

        q, k, v = (heads(p.A(x)) for p in (attn.q_proj, attn.k_proj,
                                            attn.v_proj))
        logits = q @ k.transpose(-1, -2) * 8**-0.5
        pos = [(r, c) for r in range(2) for c in range(3)]
        bias = direct_rel_pos_bias(q[:, :, 1:], pos, attn.rel_pos.h,
                                   attn.rel_pos.w)
        logits = logits + F.pad(bias, (1, 0, 1, 0))
        o = (logits.softmax(-1) @ v).transpose(1, 2).reshape(2, 7, 16)
        return attn.out_proj.A(attn.inner_attn_ln.A(o))

    results = []
    for fn in (lambda: attn(x, None, None, grid)[0], direct):
        attn.zero_grad()
        out = fn()
        out.square().sum().backward()
        results.append((out.detach(), attn.rel_pos.h.grad.clone(),
                        attn.q_proj.A.weight.grad.clone()))
    for ours, expected in zip(*results):
        torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match='relative position'):
        attn(x, torch.randn(2, 3, 16), None, grid)


@torch.no_grad()
def test_rel_pos_from_released_and_mm_checkpoints(released, tmp_path):
    """Released files hold no relative position tables: they start at zero
    (same tokens as without them) and are reported as new. An mm
    checkpoint's tables load, resized to another training size, or are
    left out by a model without them."""
    _, path = released
    images = torch.randn(1, 3, 40, 48)
    plain = dense(path, window_size=2, global_attn_indexes=[1])
    logger = MMLogger.get_instance('rel_pos_test')
    with_rel = BEiT3Dense(arch=TINY, pretrain_img_size=TINY_IMG,
                          window_size=2, global_attn_indexes=[1],
                          use_rel_pos=True, rel_pos_img_size=64,
                          init_cfg=dict(type='Pretrained', checkpoint=path))
    from beit3_mm.models.utils.weight_loading import load_beit3_checkpoint
    notes = load_beit3_checkpoint(with_rel, path, logger)
    assert any('relative position tables new' in n and '4 tensors' in n
               for n in notes)
    with_rel.eval()
    assert with_rel.encoder.layers[0].self_attn.rel_pos.h.shape == (3, 8)
    assert with_rel.encoder.layers[1].self_attn.rel_pos.h.shape == (15, 8)
    torch.testing.assert_close(with_rel(images)[0], plain(images)[0])

    randomize_(with_rel, seed=5)
    trained = with_rel(images)[0]
    assert not torch.allclose(trained, plain(images)[0], atol=1e-3)
    mm_path = str(tmp_path / 'det.pth')
    torch.save(dict(state_dict={f'backbone.{k}': v for k, v in
                                with_rel.state_dict().items()}), mm_path)
    same = BEiT3Dense(arch=TINY, pretrain_img_size=TINY_IMG, window_size=2,
                      global_attn_indexes=[1], use_rel_pos=True,
                      rel_pos_img_size=64)
    load_beit3_checkpoint(same, mm_path, logger)
    torch.testing.assert_close(same.eval()(images)[0], trained)
    other = BEiT3Dense(arch=TINY, pretrain_img_size=TINY_IMG, window_size=2,
                       global_attn_indexes=[1], use_rel_pos=True)
    notes = load_beit3_checkpoint(other, mm_path, logger)
    assert any('rel_pos.h resized from 15 to 7' in n for n in notes)
    notes = load_beit3_checkpoint(
        dense(window_size=2, global_attn_indexes=[1]), mm_path, logger)
    assert any('relative position tables' in n for n in notes)


@torch.no_grad()
def test_window_layers_and_global_layers():
    model = dense(window_size=3, global_attn_indexes=[1])
    assert [layer.self_attn.window_size for layer in model.encoder.layers
            ] == [3, 0]
    assert BEiT3Dense(arch='base').global_attn_indexes == [2, 5, 8, 11]
    assert BEiT3Dense(arch=dict(BEiT3.arch_zoo['large'], num_layers=24,
                                embed_dims=64, num_heads=4,
                                feedforward_channels=64)
                      ).global_attn_indexes == [5, 11, 17, 23]
    randomize_(model)
    images = torch.randn(1, 3, 40, 56)
    windowed = model(images)[0]
    model.encoder.layers[0].self_attn.window_size = 0
    assert not torch.allclose(windowed, model(images)[0], atol=1e-4)


def test_dense_with_cp_same_grads():
    grads = []
    images = torch.randn(1, 3, 40, 48)
    for with_cp in (False, True):
        model = dense(window_size=2, with_cp=with_cp)
        randomize_(model)
        model.train()
        model(images)[0].square().sum().backward()
        grads.append(model.encoder.layers[0].self_attn.q_proj.A.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_bad_inputs_have_clear_errors():
    model = dense()
    with pytest.raises(ValueError, match='divide by the patch size 8'):
        model(torch.randn(1, 3, 36, 40))
    with pytest.raises(ValueError, match=r'expected \[8, 16, 32, 32\]'):
        SimpleFPN(32, [16, 32, 64, 64], 16, 5)
    neck = SimpleFPN(64, [16, 32, 64, 64], 16, 5)
    with pytest.raises(ValueError, match='backbone_channel=64.*gave 32'):
        neck(model(torch.randn(1, 3, 32, 32)))
    with pytest.raises(ValueError, match='global_attn_indexes'):
        BEiT3Dense(arch=TINY, global_attn_indexes=[5])


@torch.no_grad()
def test_simple_fpn_strides_and_levels():
    # in any default scope: 'LN2d' is mmpretrain's LayerNorm2d in its own
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        neck = SimpleFPN(32, [8, 16, 32, 32], 16, 5).eval()
    outs = neck((torch.randn(2, 32, 8, 10), ))
    assert [tuple(o.shape[-2:]) for o in outs] == [(32, 40), (16, 20),
                                                   (8, 10), (4, 5), (2, 3)]
    assert type(neck.fpn1[1]).__name__ == 'LN2d'
    x = torch.randn(2, 16, 3, 3)
    torch.testing.assert_close(
        neck.fpn1[1](x),
        F.layer_norm(x.permute(0, 2, 3, 1), (16, ), eps=1e-6).permute(
            0, 3, 1, 2))


@torch.no_grad()
def test_maps_for_roi_align_are_contiguous_nchw():
    """mmcv's RoIAlign (CPU and CUDA kernels) reads its input's raw buffer
    as NCHW: a channels-last map, as a transposed token sequence or a
    permuted LayerNorm gives (and convolutions pass on), yields scrambled
    RoI features and a detector that cannot learn. Every map our backbones
    and neck hand on is contiguous NCHW."""
    images = torch.randn(2, 3, 64, 96)
    backbone = dense(window_size=2)
    neck = SimpleFPN(32, [8, 16, 32, 32], 16, 5).eval()
    maps = backbone(images)
    outs = neck(maps)
    adapter = BEiT3Adapter(
        arch=dict(TINY, num_layers=4), pretrain_img_size=TINY_IMG,
        conv_inplane=8, deform_num_heads=4, norm_cfg=dict(type='BN'),
        interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]]).eval()
    for t in (*maps, *outs, *adapter(images)):
        assert t.is_contiguous(), tuple(t.stride())
    ln = neck.fpn1[1]
    assert ln(torch.randn(2, 16, 5, 7)).is_contiguous()


def det_sample(h, w):
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    sample = DetDataSample(metainfo=dict(
        img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
        scale_factor=(1., 1.)))
    inst = InstanceData()
    inst.bboxes = torch.tensor([[10., 20., 100., 120.], [50., 40., 200.,
                                                         180.]])
    inst.labels = torch.tensor([3, 7])
    masks = torch.zeros(2, h, w, dtype=torch.uint8)
    masks[0, 20:120, 10:100] = 1
    masks[1, 40:180, 50:200] = 1
    inst.masks = BitmapMasks(masks.numpy(), h, w)
    sample.gt_instances = inst
    return sample


@pytest.mark.parametrize('name', [
    'beit3-base-p16_cascade-mask-rcnn_simplefpn_lsj-100e_coco',
    'beit3-base-p16_mask-rcnn_simplefpn_lsj-100e_coco',
    'beit3-large-p16_cascade-mask-rcnn_simplefpn_lsj-100e_coco',
])
def test_config_loss_and_predict(name):
    """Each config's model (real size) trains a step and predicts on a
    small image; layer decay groups the detector's parameters."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.optim import build_optim_wrapper
    register_all_modules()
    MMLogger.get_instance('mmengine', log_level='WARNING')
    cfg = Config.fromfile(osp.join(DET_CFGS, name + '.py'))
    cfg.model.backbone.init_cfg = None
    cfg.model.data_preprocessor.batch_augments = None  # pads to 1024
    model = MODELS.build(cfg.model)
    model.init_weights()
    optim = dict(cfg.optim_wrapper, type='OptimWrapper')  # AMP needs a GPU
    wrapper = build_optim_wrapper(model, optim)
    L = model.backbone.num_layers
    decay = cfg.optim_wrapper.paramwise_cfg.layer_decay_rate
    lrs = {id(p): g['lr'] for g in wrapper.optimizer.param_groups
           for p in g['params']}
    first = model.backbone.encoder.layers[0]
    assert lrs[id(first.ffn.A.fc1.weight)] == pytest.approx(1e-4 * decay**L)
    # ViTDet's relative position terms, in the first layer's group
    assert lrs[id(first.self_attn.rel_pos.h)] == pytest.approx(
        1e-4 * decay**L)
    assert lrs[id(model.neck.fpn2.weight)] == pytest.approx(1e-4)

    data = dict(inputs=[torch.randint(0, 255, (3, 224, 256),
                                      dtype=torch.uint8)],
                data_samples=[det_sample(224, 256)])
    losses = model.train_step(data, wrapper)
    assert torch.isfinite(losses['loss'])
    model.eval()
    with torch.no_grad():
        preds = model.test_step(data)
    assert preds[0].pred_instances.bboxes.shape[1] == 4


def test_det_inferencer_with_our_config(tmp_path):
    """mmdet's DetInferencer builds our config and reads our checkpoint."""
    from mmdet.apis import DetInferencer
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    from beit3_mm.demo import make_detection_demo
    register_all_modules()
    make_detection_demo(str(tmp_path / 'data'), num_train=1, num_val=1)
    cfg_path = DEMO_CFG
    cfg = Config.fromfile(cfg_path)
    model = MODELS.build(cfg.model)
    model.init_weights()
    ckpt = tmp_path / 'demo.pth'
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=dict(
                        classes=cfg.classes))), ckpt)
    inferencer = DetInferencer(model=cfg_path, weights=str(ckpt),
                               device='cpu', show_progress=False)
    result = inferencer(str(tmp_path / 'data/val/000000.png'),
                        return_datasamples=True)
    pred = result['predictions'][0].pred_instances
    assert pred.bboxes.shape[1] == 4 and len(pred) == len(pred.masks)
    assert inferencer.model.dataset_meta['classes'] == cfg.classes


@pytest.mark.slow
def test_demo_trains_and_reaches_map(tmp_path):
    """The README's demo: make the data, train with tools/train.py (12
    epochs of 16 iterations), test with tools/test.py on the training
    images: bbox and segm mAP about 0.8, far above zero. About two minutes
    on two cores."""
    log = run_readme_demo('detection', DEMO_CFG, tmp_path)
    bbox = float(re.findall(r'coco/bbox_mAP: ([\d.]+)', log)[-1])
    segm = float(re.findall(r'coco/segm_mAP: ([\d.]+)', log)[-1])
    assert bbox > 0.6 and segm > 0.6, log[-2000:]
