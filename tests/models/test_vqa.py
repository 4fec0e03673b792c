"""VQAv2: released-file parity, the official soft targets and loss, mask
polarity, the answer list tool and the recipe configs end to end."""
import json
import os
import os.path as osp
import subprocess
import sys
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
from beit3_mm.datasets import (build_answer_list, load_answer_list,
                               normalize_answer, save_answer_list)
from beit3_mm.models import BEiT3

CFG_DIR = osp.join(ROOT, 'configs/beit3/vqa')
BASE_CFG = osp.join(CFG_DIR, 'beit3-base-p16_vqa_8xb16-10e_vqav2-480px.py')
LARGE_CFG = osp.join(CFG_DIR, 'beit3-large-p16_vqa_8xb16-10e_vqav2-480px.py')
LARGE768_CFG = osp.join(CFG_DIR,
                        'beit3-large-p16_vqa_8xb16-10e_vqav2-768px.py')
DEMO_CFG = osp.join(CFG_DIR, 'beit3-tiny-p8_vqa_1xb32-15e_demo-vl.py')
ANSWER_TOOL = osp.join(ROOT, 'tools/misc/build_vqa_answer_list.py')
BASE_ARCH = BEiT3.arch_zoo['base']


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    return vl_demo(tmp_path_factory, num_train=8, num_val=6,
                   num_train_pairs=2, num_val_pairs=2)


def tiny_cfg(path: str, demo, img_size: int = TINY_IMG) -> Config:
    """A VQA recipe config with a tiny arch, the demo tokenizer and answer
    list, no pretrained file."""
    root, files = demo
    cfg = Config.fromfile(path)
    cfg.model.backbone.update(
        arch=TINY, img_size=img_size, vocab_size=VOCAB, drop_path_rate=0.,
        with_cp=False)
    cfg.model.update(
        tokenizer=dict(type='BEiT3Tokenizer', name_or_path=files['tokenizer']),
        answer_list=files['vqa_answer_list'],
        init_cfg=None)
    return cfg


def vqa_heads(dims: int, num_answers: int, seed: int = 1) -> dict:
    return random_heads(
        {
            'pooler.norm.weight': (dims, ),
            'pooler.norm.bias': (dims, ),
            'pooler.dense.weight': (dims, dims),
            'pooler.dense.bias': (dims, ),
            'head.0.weight': (2 * dims, dims),
            'head.0.bias': (2 * dims, ),
            'head.1.weight': (2 * dims, ),
            'head.1.bias': (2 * dims, ),
            'head.3.weight': (num_answers, 2 * dims),
            'head.3.bias': (num_answers, ),
        }, seed)


def official_vqa_logits(ref, heads, images, ids, pad):
    """``BEiT3ForVisualQuestionAnswering.forward`` of the official code
    (``Pooler``, then Linear, LayerNorm, GELU, Linear), written out over the
    torchscale backbone."""
    h = heads
    with torch.no_grad():
        x = ref(textual_tokens=ids, visual_tokens=images,
                text_padding_position=pad)['encoder_out']
        cls = F.layer_norm(x[:, 0], x.shape[-1:], h['pooler.norm.weight'],
                           h['pooler.norm.bias'], eps=1e-5)
        pooled = torch.tanh(cls @ h['pooler.dense.weight'].T +
                            h['pooler.dense.bias'])
        y = pooled @ h['head.0.weight'].T + h['head.0.bias']
        y = F.layer_norm(y, y.shape[-1:], h['head.1.weight'],
                         h['head.1.bias'], eps=1e-5)
        y = F.gelu(y)
        return y @ h['head.3.weight'].T + h['head.3.bias']


# ------------------------------------------------------------------ parity
@pytest.mark.parametrize('arch', ['tiny', 'base'])
def test_released_vqa_file_gives_official_logits(tmp_path, demo, arch):
    """A released VQA file through init_cfg and (tiny) through the converter
    gives the official answer logits, for token ids and raw questions."""
    img_size = TINY_IMG if arch == 'tiny' else 32
    ref = torchscale_beit3(TINY if arch == 'tiny' else BASE_ARCH, img_size,
                           output_norm=False)
    dims = ref.text_embed.weight.shape[1]
    num_answers = len(load_answer_list(demo[1]['vqa_answer_list']))
    heads = vqa_heads(dims, num_answers)
    src = save_released(tmp_path / 'vqa.pth', ref.state_dict(), heads)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(3, 3, img_size, img_size, generator=g)
    ids, pad = padded_ids([5, 9, 3], 10)
    questions = ['what color is the circle?', 'is there a red square?',
                 'how many shapes are there?']
    cfg = tiny_cfg(BASE_CFG, demo, img_size)
    cfg.model.backbone.arch = TINY if arch == 'tiny' else 'base'
    # the converter's key mapping does not depend on the arch: tiny only
    assert_released_logits(
        cfg, src, partial(official_vqa_logits, ref, heads, images), images,
        ids, pad, questions, 'question',
        converted=None if arch == 'base' else
        (str(tmp_path / 'vqa_mm.pth'), 'vqa'))


def test_pretraining_file_initialises_backbone_only(tmp_path, demo):
    """From a pretraining file at 224 (here 32 -> 48 px): the backbone is
    loaded with its table resized, the heads keep the official init."""
    from helpers import official_resize, pretrain_heads
    ref = torchscale_beit3(TINY, TINY_IMG, output_norm=True, seed=2)
    src = save_released(tmp_path / 'pt.pth', ref.state_dict(),
                        pretrain_heads(32))
    cfg = tiny_cfg(BASE_CFG, demo, img_size=48)
    cfg.model.init_cfg = dict(type='Pretrained', checkpoint=src)
    model = init_model(cfg)
    key = 'encoder.embed_positions.A.weight'
    torch.testing.assert_close(
        model.backbone.state_dict()[key],
        official_resize(ref.state_dict()[key], 48 // TINY['patch_size']))
    torch.testing.assert_close(model.backbone.text_embed.weight,
                               ref.text_embed.weight)
    w = model.head[3].weight
    assert abs(w.std().item() - 0.02) < 0.005 and w.abs().max() < 0.1
    assert torch.equal(model.head[1].weight, torch.ones_like(w[0]))


# ------------------------------------------------------- targets and loss
@pytest.fixture(scope='module')
def tiny_model(demo):
    return init_model(tiny_cfg(BASE_CFG, demo))


def test_soft_targets_and_loss_are_official(tiny_model):
    model = tiny_model.train()
    answers = model.answer_list
    red, blue = answers.index('red'), answers.index('blue')
    samples = [
        # 6 x red, 3 x blue, 1 x an answer outside the vocabulary
        DataSample(question='what color is the circle?',
                   gt_answer=['red', 'blue', 'purple'],
                   gt_answer_weight=[0.6, 0.3, 0.1]),
        # 1 annotator of 10, 2 of 10
        DataSample(question='what color is the square?',
                   gt_answer=['blue', 'red'], gt_answer_weight=[0.1, 0.2]),
    ]
    targets = model.soft_targets(samples)
    expected = torch.zeros(2, len(answers))
    expected[0, red], expected[0, blue] = 1.0, 0.9
    expected[1, blue], expected[1, red] = 0.3, 0.6
    torch.testing.assert_close(targets, expected, rtol=0, atol=0)

    images = torch.randn(2, 3, TINY_IMG, TINY_IMG)
    loss = model.loss(images, samples)['loss']
    with torch.no_grad():
        x = model(images, samples, mode='tensor')['logits']
    p = torch.sigmoid(x)
    bce = -(expected * torch.log(p) + (1 - expected) * torch.log(1 - p))
    # official: BCEWithLogits (mean over B x A) x A
    torch.testing.assert_close(
        loss, bce.mean() * len(answers), rtol=1e-5, atol=1e-6)
    loss.backward()
    assert model.head[3].weight.grad.abs().sum() > 0
    with pytest.raises(KeyError, match='gt_answer'):
        model.loss(images, [DataSample(question='what?')] * 2)


def test_padding_does_not_change_the_answers(tiny_model):
    """Pad tokens (1 = pad) are ignored: junk ids in the padding or more
    padding leave the logits as they are; the opposite polarity does not."""
    assert_padding_is_ignored(tiny_model.eval(),
                              torch.randn(2, 3, TINY_IMG, TINY_IMG))


def test_predict_gives_vqa_answers_for_vqaacc(tiny_model):
    from mmpretrain.evaluation import VQAAcc
    model = tiny_model.eval()
    top = model.answer_list.index('yes')
    with torch.no_grad():
        model.head[3].bias[top] += 100.  # every prediction is 'yes'
    try:
        samples = [
            DataSample(question='is there a red circle?', gt_answer=['yes'],
                       gt_answer_weight=[1.]),
            DataSample(question='is there a blue cross?',
                       gt_answer=['no', 'yes'], gt_answer_weight=[0.8, 0.2]),
            DataSample(question='how many shapes are there?',
                       gt_answer=['2'], gt_answer_weight=[1.]),
        ]
        with torch.no_grad():
            preds = model.predict(torch.randn(3, 3, TINY_IMG, TINY_IMG),
                                  samples)
    finally:
        with torch.no_grad():
            model.head[3].bias[top] -= 100.
    assert [p.pred_answer for p in preds] == ['yes'] * 3
    assert all(p.pred_answer_score > 0.99 for p in preds)
    metric = VQAAcc()
    metric.process(None, [p.to_dict() for p in preds])
    # 1, min(1, 0.2 / 0.3), 0
    acc = metric.compute_metrics(metric.results)['acc']
    assert acc == pytest.approx(100 * (1 + 2 / 3 + 0) / 3)


# ------------------------------------------------------------ answer list
def test_normalize_answer_is_vilt():
    cases = {
        'Yes': 'yes', 'two': '2', 'The dog': 'dog', 'a red car.': 'red car',
        '1,000': '1000', "dont": "don't", 'black and white!': 'black and white',
        'hot-dog': 'hot dog', 'ten': '10'
    }
    assert {k: normalize_answer(k) for k in cases} == cases


def _annotations(path, majors):
    anns = [
        dict(question_id=i, multiple_choice_answer=a,
             answers=[dict(answer=a, answer_id=1)])
        for i, a in enumerate(majors)
    ]
    with open(path, 'w') as f:
        json.dump(dict(annotations=anns), f)
    return str(path)


def test_answer_list_tool_is_official(tmp_path):
    """Normalised majority answers of train then val, kept at >= 9, in
    order of first occurrence, written in the official format."""
    train = _annotations(
        tmp_path / 'train.json',
        ['no'] * 5 + ['Yes'] * 4 + ['two'] * 9 + ['cat'] * 8 + ['no'] * 4)
    val = _annotations(tmp_path / 'val.json',
                       ['yes'] * 5 + ['2'] + ['cat'] + ['dog'] * 20)
    out = tmp_path / 'answers' / 'answer2label.txt'
    log = subprocess.run(
        [sys.executable, ANSWER_TOOL, train, val, '--out', str(out)],
        check=True, capture_output=True, text=True).stdout
    assert 'wrote 5 answers' in log
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines == [
        dict(answer=a, label=i)
        for i, a in enumerate(['no', 'yes', '2', 'cat', 'dog'])
    ]
    assert load_answer_list(str(out)) == ['no', 'yes', '2', 'cat', 'dog']
    # val counts too; the order follows the files
    assert build_answer_list([val, train]) == ['yes', '2', 'cat', 'dog', 'no']
    assert build_answer_list([train], min_count=10) == []
    questions = tmp_path / 'questions.json'
    questions.write_text(json.dumps(dict(questions=[])))
    with pytest.raises(KeyError, match='questions.json is not a VQAv2'):
        build_answer_list([str(questions)])


def test_answer_list_formats_and_errors(tmp_path):
    answers = ['yes', 'no', 'red']
    (tmp_path / 'a.json').write_text(json.dumps(answers))
    (tmp_path / 'a.txt').write_text('yes\nno\n\nred\n')
    save_answer_list(answers, str(tmp_path / 'answer2label.txt'))
    for name in ('a.json', 'a.txt', 'answer2label.txt'):
        assert load_answer_list(str(tmp_path / name)) == answers
    with pytest.raises(FileNotFoundError,
                       match='missing.txt.*build_vqa_answer_list'):
        load_answer_list(str(tmp_path / 'missing.txt'))
    (tmp_path / 'bad.txt').write_text(
        '{"answer": "yes", "label": 0}\n{"answer": "no", "label": 2}\n')
    with pytest.raises(ValueError, match='line 2 has label 2'):
        load_answer_list(str(tmp_path / 'bad.txt'))
    (tmp_path / 'dup.txt').write_text('yes\nno\nyes\n')
    with pytest.raises(ValueError, match='repeated'):
        load_answer_list(str(tmp_path / 'dup.txt'))


# ----------------------------------------------------------------- configs
@pytest.mark.parametrize('path,lr,drop_path,size,pretrained', [
    (BASE_CFG, 3e-5, 0.1, 480, 'beit3_base_patch16_224.pth'),
    (LARGE_CFG, 2e-5, 0.15, 480, 'beit3_large_patch16_224.pth'),
    (LARGE768_CFG, 2e-5, 0.15, 768, 'beit3_large_indomain_patch16_224.pth'),
])
def test_recipe_configs(path, lr, drop_path, size, pretrained):
    cfg = Config.fromfile(path)
    assert cfg.model.backbone.arch == ('base' if path == BASE_CFG else
                                       'large')
    assert cfg.model.backbone.img_size == size
    assert cfg.model.backbone.drop_path_rate == drop_path
    assert cfg.model.backbone.output_norm is False
    assert cfg.model.init_cfg.checkpoint.endswith(pretrained)
    assert cfg.data_preprocessor.mean == cfg.data_preprocessor.std == [
        127.5
    ] * 3
    optim = cfg.optim_wrapper
    assert optim.optimizer.lr == lr and optim.optimizer.betas == (0.9, 0.98)
    assert optim.optimizer.weight_decay == 0.01
    assert optim.paramwise_cfg.layer_decay_rate == 1.0
    assert optim.paramwise_cfg.custom_keys == {'head.': dict(lr_mult=20.)}
    assert cfg.train_cfg.max_epochs == 10
    assert cfg.param_scheduler[0].end == 1
    assert cfg.train_dataloader.batch_size * 8 == 128
    crop, flip, randaug = cfg.train_pipeline[1:4]
    assert crop.scale == size and crop.crop_ratio_range == (0.5, 1.0)
    assert flip.type == 'RandomFlip' and randaug.type == 'RandAugment'
    assert cfg.test_pipeline[1].scale == (size, size)
    assert not any(t.type == 'CleanCaption'
                   for t in cfg.train_pipeline + cfg.test_pipeline)


def _demo_dataset(cfg, demo, split, pipeline, with_answers=True):
    root, files = demo
    return dict(
        type='COCOVQA',
        data_root=root,
        data_prefix=f'images/{split}',
        question_file=files[f'vqa_{split}_questions'],
        ann_file=files[f'vqa_{split}_annotations'] if with_answers else '',
        pipeline=pipeline)


def _loader(cfg_loader, dataset, batch_size=2):
    from mmengine.runner import Runner
    cfg_loader = dict(cfg_loader)
    cfg_loader.update(
        dataset=dataset, batch_size=batch_size, num_workers=0,
        persistent_workers=False)
    return Runner.build_dataloader(cfg_loader)


@pytest.mark.parametrize('path', [BASE_CFG, LARGE_CFG, LARGE768_CFG])
def test_recipe_trains_and_predicts(path, demo, tmp_path):
    """Each recipe's pipelines, collate, preprocessor, model and optimizer
    (tiny arch, patch 16, CPU): a loss step, a VQAAcc evaluation and a
    ReportVQA file."""
    from mmengine.registry import init_default_scope
    from mmpretrain.evaluation import ReportVQA, VQAAcc
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(path)
    size = cfg.model.backbone.img_size
    cfg = tiny_cfg(path, demo, img_size=size)
    cfg.model.backbone.arch = dict(TINY, patch_size=16)
    model = build_model(cfg)
    model.init_weights()
    wrapper = plain_optim_wrapper(model, cfg)
    head = {id(p) for p in model.head.parameters()}
    for group in wrapper.optimizer.param_groups:
        in_head = id(group['params'][0]) in head
        assert group['lr'] == pytest.approx(
            cfg.optim_wrapper.optimizer.lr * (20 if in_head else 1))

    train = _loader(cfg.train_dataloader,
                    _demo_dataset(cfg, demo, 'train', cfg.train_pipeline))
    data = next(iter(train))
    assert data['inputs'].shape == (2, 3, size, size)
    before = model.pooler.dense.weight.clone()
    losses = model.train_step(data, wrapper)
    assert torch.isfinite(losses['loss']) and losses['loss'] > 0
    assert not torch.equal(before, model.pooler.dense.weight)

    val = _loader(cfg.test_dataloader,
                  _demo_dataset(cfg, demo, 'val', cfg.test_pipeline), 3)
    acc = VQAAcc()
    preds = model.val_step(next(iter(val)))
    assert all(p.pred_answer in model.answer_list for p in preds)
    acc.process(None, [p.to_dict() for p in preds])
    assert 0 <= acc.compute_metrics(acc.results)['acc'] <= 100

    test = _loader(
        cfg.test_dataloader,
        _demo_dataset(cfg, demo, 'val', cfg.test_pipeline, False), 3)
    report = ReportVQA(file_path=str(tmp_path / 'vqa_test.json'))
    report.process(None, [p.to_dict() for p in model.test_step(
        next(iter(test)))])
    report.compute_metrics(report.results)
    result = json.loads((tmp_path / 'vqa_test.json').read_text())
    assert len(result) == 3 and set(result[0]) == {'question_id', 'answer'}


def test_inferencer_takes_the_demo_config(demo, tmp_path):
    """mmpretrain's VisualQuestionAnsweringInferencer with our config and a
    checkpoint gives the answers of the model's own predict."""
    from mmengine.runner import save_checkpoint
    from mmpretrain import VisualQuestionAnsweringInferencer
    root, files = demo
    cfg = Config.fromfile(DEMO_CFG)
    cfg.model.tokenizer.name_or_path = files['tokenizer']
    cfg.model.answer_list = files['vqa_answer_list']
    model = init_model(cfg).eval()
    ckpt = str(tmp_path / 'demo.pth')
    save_checkpoint(model.state_dict(), ckpt)

    inferencer = VisualQuestionAnsweringInferencer(
        cfg, pretrained=ckpt, device='cpu')
    images = [
        osp.join(root, 'images/val', f)
        for f in sorted(os.listdir(osp.join(root, 'images/val')))[:2]
    ]
    questions = ['how many shapes are there?', 'what shape is on the left?']
    results = inferencer(images, questions)
    assert [r['question'] for r in results] == questions

    from mmengine.dataset import Compose, default_collate
    from mmpretrain.registry import TRANSFORMS
    pipeline = Compose([TRANSFORMS.build(t) for t in cfg.test_pipeline])
    data = default_collate([
        pipeline(dict(img_path=img, question=q))
        for img, q in zip(images, questions)
    ])
    expected = model.test_step(data)
    assert [r['pred_answer'] for r in results
            ] == [p.pred_answer for p in expected]
