"""NLVR2: released-file parity, the official head init, the loss, mask
polarity and the recipe config end to end."""
import os.path as osp
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from helpers import (ROOT, TINY, TINY_IMG, VOCAB, assert_padding_is_ignored,
                     assert_released_logits, build_model, init_model,
                     padded_ids, plain_optim_wrapper, random_heads,
                     save_released, torchscale_beit3, vl_demo)
from mmengine.config import Config
from mmpretrain.structures import DataSample

import beit3_mm  # noqa: F401
from beit3_mm.demo import make_vl_demo
from beit3_mm.models import BEiT3

BASE_CFG = osp.join(ROOT, 'configs/beit3/nlvr2/'
                    'beit3-base-p16_nlvr2_8xb32-20e_nlvr2-224px.py')
DEMO_CFG = osp.join(ROOT, 'configs/beit3/nlvr2/'
                    'beit3-tiny-p8_nlvr2_1xb32-20e_demo-vl.py')
BASE_ARCH = BEiT3.arch_zoo['base']


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    return vl_demo(tmp_path_factory, num_train=2, num_val=2,
                   num_train_pairs=4, num_val_pairs=4)


def tiny_cfg(demo, img_size: int = TINY_IMG) -> Config:
    cfg = Config.fromfile(BASE_CFG)
    cfg.model.backbone.update(
        arch=TINY, img_size=img_size, vocab_size=VOCAB, drop_path_rate=0.)
    cfg.model.tokenizer.name_or_path = demo[1]['tokenizer']
    cfg.model.init_cfg = None
    return cfg


def nlvr2_heads(dims: int, seed: int = 1) -> dict:
    return random_heads(
        {
            'head.norm1.weight': (4 * dims, ),
            'head.norm1.bias': (4 * dims, ),
            'head.dense1.weight': (2 * dims, 4 * dims),
            'head.dense1.bias': (2 * dims, ),
            'head.norm2.weight': (2 * dims, ),
            'head.norm2.bias': (2 * dims, ),
            'head.dense2.weight': (2, 2 * dims),
            'head.dense2.bias': (2, ),
        }, seed)


def official_nlvr2_logits(ref, heads, image_a, image_b, ids, pad):
    """``BEiT3ForVisualReasoning.forward`` of the official code, written
    out over the torchscale backbone."""
    h = heads
    bsz = ids.shape[0]
    with torch.no_grad():
        out = ref(
            textual_tokens=torch.cat((ids, ids)),
            visual_tokens=torch.cat((image_a, image_b)),
            text_padding_position=torch.cat((pad, pad)))
        x, split = out['encoder_out'], out['multiway_split_position']
        cls_rep = torch.cat((x[:, 0], x[:, split]), dim=-1)
        a, b = torch.split(cls_rep, [bsz, bsz])
        y = torch.cat((a, b), dim=-1)
        y = F.layer_norm(y, y.shape[-1:], h['head.norm1.weight'],
                         h['head.norm1.bias'], eps=1e-5)
        y = y @ h['head.dense1.weight'].T + h['head.dense1.bias']
        y = F.layer_norm(y, y.shape[-1:], h['head.norm2.weight'],
                         h['head.norm2.bias'], eps=1e-5)
        return F.gelu(y) @ h['head.dense2.weight'].T + h['head.dense2.bias']


@pytest.mark.parametrize('arch', ['tiny', 'base'])
def test_released_nlvr2_file_gives_official_logits(tmp_path, demo, arch):
    """A released NLVR2 file through init_cfg and (tiny) through the
    converter gives the official logits, for token ids and raw statements;
    the base arch (768-d, 12 layers, 32 px) once, through init_cfg."""
    img_size = TINY_IMG
    ref = torchscale_beit3(TINY if arch == 'tiny' else BASE_ARCH, img_size,
                           output_norm=True)
    heads = nlvr2_heads(ref.text_embed.weight.shape[1])
    src = save_released(tmp_path / 'nlvr2.pth', ref.state_dict(), heads)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(3, 2, 3, img_size, img_size, generator=g)
    ids, pad = padded_ids([5, 9, 3], 10)
    texts = ['the left image contains a red circle',
             'both images contain a square', 'there are 3 shapes in total']
    cfg = tiny_cfg(demo, img_size)
    cfg.model.backbone.arch = TINY if arch == 'tiny' else 'base'
    # the converter's key mapping does not depend on the arch: tiny only
    assert_released_logits(
        cfg, src,
        partial(official_nlvr2_logits, ref, heads, images[:, 0],
                images[:, 1]),
        images, ids, pad, texts, 'text',
        converted=None if arch == 'base' else
        (str(tmp_path / 'nlvr2_mm.pth'), 'nlvr2'))


def test_head_init_is_official(demo):
    """Truncated normal (std 0.02) then dense1 / dense2 scaled by 0.001."""
    model = init_model(tiny_cfg(demo))
    for layer in (model.head.dense1, model.head.dense2):
        assert abs(layer.weight.std().item() - 2e-5) < 0.5e-5
        assert layer.weight.abs().max() < 2e-4
        assert not layer.bias.any()
    for norm in (model.head.norm1, model.head.norm2):
        assert torch.equal(norm.weight, torch.ones_like(norm.weight))


@pytest.fixture(scope='module')
def tiny_model(demo):
    model = init_model(tiny_cfg(demo))
    with torch.no_grad():  # a head that is not nearly zero
        model.head.dense2.weight.normal_(std=0.5)
    return model


def test_loss_is_cross_entropy(tiny_model):
    model = tiny_model.train()
    images = torch.randn(2, 2, 3, TINY_IMG, TINY_IMG)
    samples = [
        DataSample(text='both images contain a circle').set_gt_label(1),
        DataSample(text='no image contains a red shape').set_gt_label(0),
    ]
    loss = model.loss(images, samples)['loss']
    with torch.no_grad():
        logits = model(images, samples, mode='tensor')['logits']
    log_p = logits - logits.exp().sum(-1, keepdim=True).log()
    expected = -(log_p[0, 1] + log_p[1, 0]) / 2
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    loss.backward()
    assert model.head.dense1.weight.grad.abs().sum() > 0
    with pytest.raises(KeyError, match='gt_label'):
        model.loss(images, [DataSample(text='a')] * 2)
    with pytest.raises(ValueError, match=r'\(B, 2, C, H, W\)'):
        model.forward_logits(images[:, 0], *model.tokenize(['a', 'b']))


def test_padding_does_not_change_the_logits(tiny_model):
    assert_padding_is_ignored(tiny_model.eval(),
                              torch.randn(2, 2, 3, TINY_IMG, TINY_IMG))


def test_recipe_config():
    cfg = Config.fromfile(BASE_CFG)
    assert cfg.model.backbone.arch == 'base'
    assert cfg.model.backbone.img_size == 224
    assert cfg.model.backbone.drop_path_rate == 0.2
    assert cfg.model.backbone.output_norm is True
    assert cfg.model.init_cfg.checkpoint.endswith('beit3_base_patch16_224.pth')
    optim = cfg.optim_wrapper
    assert optim.optimizer.lr == 7e-4 and optim.optimizer.weight_decay == 0.2
    assert optim.paramwise_cfg.layer_decay_rate == 0.65
    assert cfg.train_cfg.max_epochs == 20 and cfg.param_scheduler[0].end == 5
    assert cfg.train_dataloader.batch_size * 8 == 256
    assert cfg.data_preprocessor.mean == cfg.data_preprocessor.std == [
        127.5
    ] * 3
    crop = cfg.train_dataloader.dataset.pipeline[0].transforms[1]
    assert crop.scale == 224 and crop.crop_ratio_range == (0.5, 1.0)
    assert cfg.test_dataloader.dataset.ann_file == 'test1.json'


def test_recipe_trains_and_predicts(demo):
    """The recipe's pipelines, collate, preprocessor, model and optimizer
    (tiny arch, patch 16, CPU): a loss step and an Accuracy evaluation."""
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    from mmpretrain.evaluation import Accuracy
    init_default_scope('mmpretrain')
    root, files = demo
    cfg = tiny_cfg(demo, img_size=224)
    cfg.model.backbone.arch = dict(TINY, patch_size=16)
    model = build_model(cfg)
    model.init_weights()
    wrapper = plain_optim_wrapper(model, cfg)

    def loader(cfg_loader, split):
        cfg_loader = dict(cfg_loader)
        cfg_loader['dataset'] = dict(
            cfg_loader['dataset'], data_root=root,
            ann_file=files[f'nlvr2_{split}'], data_prefix=f'nlvr2/{split}')
        cfg_loader.update(batch_size=2, num_workers=0,
                          persistent_workers=False)
        return Runner.build_dataloader(cfg_loader)

    data = next(iter(loader(cfg.train_dataloader, 'train')))
    before = model.head.dense1.weight.clone()
    losses = model.train_step(data, wrapper)
    assert torch.isfinite(losses['loss'])
    assert not torch.equal(before, model.head.dense1.weight)

    data = next(iter(loader(cfg.test_dataloader, 'dev')))
    preds = model.val_step(data)
    assert data['inputs'][0].shape == (2, 3, 224, 224)
    metric = Accuracy()
    metric.process(None, [p.to_dict() for p in preds])
    assert 0 <= metric.compute_metrics(metric.results)['top1'] <= 100


def test_inferencer_takes_the_demo_config(demo, tmp_path):
    """mmpretrain's NLVRInferencer with our config and a checkpoint gives
    the model's own scores."""
    from mmengine.dataset import Compose, default_collate
    from mmengine.runner import save_checkpoint
    from mmpretrain import NLVRInferencer
    from mmpretrain.registry import TRANSFORMS
    root, files = demo
    cfg = Config.fromfile(DEMO_CFG)
    cfg.model.tokenizer.name_or_path = files['tokenizer']
    model = init_model(cfg).eval()
    with torch.no_grad():
        model.head.dense2.weight.normal_(std=0.5)
    ckpt = str(tmp_path / 'demo.pth')
    save_checkpoint(model.state_dict(), ckpt)

    inferencer = NLVRInferencer(cfg, pretrained=ckpt, device='cpu')
    pair = [osp.join(root, f'nlvr2/dev/dev-0-0-img{k}.png') for k in (0, 1)]
    text = 'both images contain a circle'
    (result, ) = inferencer((*pair, text))

    pipeline = Compose([TRANSFORMS.build(t) for t in cfg.test_pipeline])
    data = default_collate([pipeline(dict(img_path=pair, text=text))])
    (expected, ) = model.test_step(data)
    torch.testing.assert_close(
        torch.as_tensor(result['pred_scores']), expected.pred_score,
        rtol=0, atol=1e-6)
    assert result['pred_label'] == expected.pred_label.item()


def test_demo_config_learns_the_statements(tmp_path):
    """The demo config trains from scratch and tests (Runner, as
    tools/train.py and tools/test.py) clearly above chance. Scaled down for
    CI: 32 px images, 960 pairs, 16 epochs (about 30 s on one core). The
    statements alone tell nothing (each is as often true as false), so the
    accuracy comes from reading the images."""
    from mmengine.runner import Runner
    root = str(tmp_path / 'demo_vl')
    make_vl_demo(root, num_train=2, num_val=2, num_train_pairs=960,
                 num_val_pairs=200, img_size=32)
    cfg = Config.fromfile(DEMO_CFG)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.log_level = 'WARNING'
    cfg.model.backbone.img_size = 32
    cfg.model.tokenizer.name_or_path = osp.join(root, 'beit3_demo.spm')
    for loader in (cfg.train_dataloader, cfg.val_dataloader,
                   cfg.test_dataloader):
        loader.dataset.data_root = root
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        assert loader.dataset.pipeline[0].transforms[1].type == 'Resize'
        loader.dataset.pipeline[0].transforms[1].scale = (32, 32)
    epochs = 16
    cfg.train_cfg.update(max_epochs=epochs, val_interval=epochs)
    assert cfg.param_scheduler[1].type == 'CosineAnnealingLR'
    cfg.param_scheduler[1].end = epochs
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1)
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    assert metrics['accuracy/top1'] >= 70, metrics
