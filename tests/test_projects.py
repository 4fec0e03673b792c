"""The projects under projects/: every config builds, every demo trains a
step on tiny generated data, the example neck and the GQA helpers work,
and (slow) the tools run the projects end to end."""
import glob
import json
import os.path as osp
import sys

import pytest
import torch
from helpers import TINY, VOCAB, build_model, run_tool
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

import beit3_mm  # noqa: F401
from beit3_mm.datasets import load_answer_list
from beit3_mm.demo import make_classification_demo, make_vl_demo

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# `projects.*` imports from the repo root (PYTHONPATH for tools/train.py)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from projects.example_project.beit3_example import (  # noqa: E402
    AttentionPoolNeck)
from projects.gqa.beit3_gqa import (  # noqa: E402
    build_gqa_answer_list, load_gqa_questions, majority_baseline,
    make_gqa_demo)

PROJECT_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'projects/*/configs/*.py')))
EXAMPLE_CFG = osp.join(
    ROOT, 'projects/example_project/configs/'
    'beit3-tiny-p8_attn-pool_1xb32-40e_demo-shapes.py')
GQA_DEMO_CFG = osp.join(
    ROOT, 'projects/gqa/configs/beit3-tiny-p8_gqa_1xb32-8e_demo-vl.py')
GQA_CFG = osp.join(
    ROOT, 'projects/gqa/configs/beit3-base-p16_gqa_8xb16-10e_gqa-480px.py')
VQA_CFG = osp.join(
    ROOT, 'configs/beit3/vqa/beit3-base-p16_vqa_8xb16-10e_vqav2-480px.py')
DEMO_CONFIGS = [EXAMPLE_CFG, GQA_DEMO_CFG]


def _name(path: str) -> str:
    return osp.relpath(path, osp.join(ROOT, 'projects'))


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    """A folder with tiny demo sets where the demo configs look for them:
    ``data/demo_cls`` and ``data/demo_vl`` (with its ``gqa/`` part)."""
    root = tmp_path_factory.mktemp('projects')
    make_classification_demo(
        str(root / 'data/demo_cls'), num_train=8, num_val=4)
    vl = str(root / 'data/demo_vl')
    make_vl_demo(
        vl,
        num_train=16,
        num_val=8,
        num_train_pairs=2,
        num_val_pairs=2,
        vocab_size=60)
    make_gqa_demo(vl)
    return root


def _localize(cfg: Config, data_dir) -> Config:
    """A full-size config with a tiny arch, the demo tokenizer and GQA
    answer list and no pretrained file; a demo config as it is."""
    if isinstance(cfg.model.backbone.arch, str):
        cfg.model.backbone.update(
            arch=dict(TINY, patch_size=16),
            vocab_size=VOCAB,
            drop_path_rate=0.)
        cfg.model.init_cfg = None
        vl = data_dir / 'data/demo_vl'
        cfg.model.tokenizer.name_or_path = str(vl / 'beit3_demo.spm')
        cfg.model.answer_list = str(vl / 'gqa/answer2label.txt')
    return cfg


def _train_step(cfg: Config, batch_size: int):
    """Build the model, optimizer and train loader of ``cfg``; one step.
    Returns the model, its losses and the parameters before the step."""
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    model = build_model(cfg)
    model.init_weights()
    optim_cfg = dict(cfg.optim_wrapper)
    if optim_cfg.get('type') == 'AmpOptimWrapper':  # it asserts a GPU
        optim_cfg.update(type='OptimWrapper')
        optim_cfg.pop('loss_scale')
    wrapper = build_optim_wrapper(model, optim_cfg)
    loader = Runner.build_dataloader(
        dict(cfg.train_dataloader, batch_size=batch_size))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = model.train_step(next(iter(loader)), wrapper)
    return model, losses, before


def _evaluate(cfg: Config, model) -> dict:
    """The val metric of ``cfg`` on one val batch of 4."""
    from mmpretrain.registry import METRICS
    loader = Runner.build_dataloader(dict(cfg.val_dataloader, batch_size=4))
    metric = METRICS.build(cfg.val_evaluator)
    preds = model.val_step(next(iter(loader)))
    metric.process(None, [p.to_dict() for p in preds])
    return metric.evaluate(len(preds))


# ---------------------------------------------------------------- configs
def test_every_project_has_the_mm_layout():
    projects = [
        osp.dirname(p)
        for p in sorted(glob.glob(osp.join(ROOT, 'projects/[!_]*/')))
    ]
    assert {osp.basename(p) for p in projects} >= {'example_project', 'gqa'}
    for project in projects:
        readme = open(osp.join(project, 'README.md')).read()
        for section in ('## Description', '## Usage', '## Results',
                        '## Citation', '## Checklist'):
            assert section in readme, (project, section)
        assert glob.glob(osp.join(project, 'configs/*.py')), project


@pytest.mark.parametrize('path', PROJECT_CONFIGS, ids=_name)
def test_project_config_builds(path, data_dir, monkeypatch):
    """Config.fromfile (custom imports included) and the model build."""
    monkeypatch.chdir(data_dir)
    cfg = _localize(Config.fromfile(path), data_dir)
    assert 'beit3_mm' in cfg.custom_imports.imports
    init_default_scope(cfg.default_scope)
    model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize('path', DEMO_CONFIGS, ids=_name)
def test_demo_trains_a_step_and_evaluates(path, data_dir, monkeypatch):
    monkeypatch.chdir(data_dir)
    cfg = Config.fromfile(path)
    model, losses, before = _train_step(cfg, batch_size=4)
    assert torch.isfinite(losses['loss']) and losses['loss'] > 0
    changed = {
        k
        for k, v in model.state_dict().items()
        if not torch.equal(v, before[k])
    }
    new = 'neck.query' if path == EXAMPLE_CFG else 'head.3.weight'
    assert new in changed and any(k.startswith('backbone.') for k in changed)
    metrics = _evaluate(cfg, model)
    key = 'accuracy/top1' if path == EXAMPLE_CFG else 'GQA/acc'
    assert set(metrics) == {key}


def test_example_config_swaps_the_pooling_only():
    base = Config.fromfile(
        osp.join(
            ROOT, 'configs/beit3/classification/'
            'beit3-tiny-p8_1xb32-40e_demo-shapes.py'))
    cfg = Config.fromfile(EXAMPLE_CFG)
    assert cfg.custom_imports.imports == [
        'beit3_mm', 'projects.example_project.beit3_example'
    ]
    assert cfg.model.backbone.out_type == 'raw'
    assert cfg.model.neck == dict(
        type='AttentionPoolNeck', in_channels=64, num_heads=4)
    for key in ('train_dataloader', 'optim_wrapper', 'param_scheduler',
                'train_cfg'):
        assert cfg[key] == base[key], key
    assert cfg.model.head == base.model.head


def test_example_neck_is_at_the_top_depth(data_dir, monkeypatch):
    """Layer decay puts the neck with the head (lr scale 1)."""
    monkeypatch.chdir(data_dir)
    cfg = Config.fromfile(EXAMPLE_CFG)
    init_default_scope(cfg.default_scope)
    model = build_model(cfg)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    neck = {id(p) for p in model.neck.parameters()}
    scales = {
        group['lr_scale']
        for group in wrapper.optimizer.param_groups if any(
            id(p) in neck for p in group['params'])
    }
    assert scales == {1.0}


def test_gqa_config_is_the_vqav2_recipe_on_gqa():
    cfg, vqa = Config.fromfile(GQA_CFG), Config.fromfile(VQA_CFG)
    assert cfg.model.backbone == vqa.model.backbone
    assert cfg.model.init_cfg == vqa.model.init_cfg
    for key in ('optim_wrapper', 'param_scheduler', 'train_cfg',
                'data_preprocessor'):
        assert cfg[key] == vqa[key], key
    assert cfg.model.answer_list == 'data/gqa/annotations/answer2label.txt'
    train = cfg.train_dataloader.dataset
    assert (train.type, train.data_root, train.data_prefix, train.ann_file) \
        == ('GQA', 'data/gqa', 'images',
            'annotations/train_balanced_questions.json')
    # no flip, otherwise the VQAv2 pipeline
    assert [t.type for t in train.pipeline] == [
        t.type for t in vqa.train_pipeline if t.type != 'RandomFlip'
    ]
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        assert loader.dataset.ann_file == \
            'annotations/testdev_balanced_questions.json'
        assert loader.dataset.pipeline == vqa.test_pipeline
    assert cfg.val_evaluator == cfg.test_evaluator == dict(type='GQAAcc')


def test_gqa_recipe_trains_a_step(data_dir, monkeypatch):
    """The full-size recipe's pipelines (crop to 480, RandAugment), loader,
    preprocessor, model and optimizer with a tiny arch on the demo set."""
    monkeypatch.chdir(data_dir)
    cfg = _localize(Config.fromfile(GQA_CFG), data_dir)
    vl = data_dir / 'data/demo_vl'
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.update(num_workers=0, persistent_workers=False)
        loader.dataset.update(data_root=str(vl), data_prefix='images')
    cfg.train_dataloader.dataset.ann_file = 'gqa/train_balanced_questions.json'
    cfg.val_dataloader.dataset.ann_file = 'gqa/testdev_balanced_questions.json'
    model, losses, _ = _train_step(cfg, batch_size=2)
    assert torch.isfinite(losses['loss'])
    assert 0 <= _evaluate(cfg, model)['GQA/acc'] <= 1


# ------------------------------------------------------------ components
def test_attention_pool_neck():
    torch.manual_seed(0)
    neck = AttentionPoolNeck(in_channels=16, num_heads=4).eval()
    tokens = torch.randn(3, 10, 16)
    (out, ) = neck((tokens, ))
    assert out.shape == (3, 16)
    # a weighted mean of the tokens: their order does not matter
    (shuffled, ) = neck((tokens[:, torch.randperm(10)], ))
    torch.testing.assert_close(shuffled, out, rtol=0, atol=1e-5)
    # every token counts
    changed = tokens.clone()
    changed[:, 7] += 1
    assert not torch.allclose(neck((changed, ))[0], out, atol=1e-4)
    with pytest.raises(ValueError, match="out_type='raw'"):
        neck((torch.randn(3, 16, 2, 2), ))
    with pytest.raises(ValueError, match='does not divide'):
        AttentionPoolNeck(in_channels=16, num_heads=3)


def test_gqa_demo_files_are_read_by_mmpretrain(data_dir):
    """mmpretrain's GQA dataset reads the converted demo: every VQA
    question, its majority answer, its image."""
    from mmpretrain.datasets import GQA
    vl = data_dir / 'data/demo_vl'
    dataset = GQA(
        data_root=str(vl),
        data_prefix='images',
        ann_file='gqa/testdev_balanced_questions.json')
    questions = json.loads(
        (vl / 'annotations/vqa_val_questions.json').read_text())['questions']
    annotations = json.loads(
        (vl / 'annotations/vqa_val_annotations.json').read_text())
    assert len(dataset) == len(questions)
    for item, q, ann in zip(dataset, questions, annotations['annotations']):
        assert item['question'] == q['question']
        assert item['gt_answer'] == ann['multiple_choice_answer']
        assert item['img_path'] == str(vl / 'images/val' /
                                       f'{q["image_id"]:012d}.png')
        assert osp.isfile(item['img_path'])


def test_gqa_answer_list_and_baseline(tmp_path, data_dir):
    items = [
        dict(image='1.jpg', question='q', question_id=str(i), answer=a)
        for i, a in enumerate(['no', 'yes', 'yes', 'two', 'no', 'yes'])
    ]
    train = tmp_path / 'train.json'
    train.write_text(json.dumps(items))
    test = tmp_path / 'test.json'
    test.write_text(json.dumps(items[:4]))
    assert build_gqa_answer_list([str(train)]) == ['no', 'yes', 'two']
    assert build_gqa_answer_list([str(train)], min_count=2) == ['no', 'yes']
    assert majority_baseline(str(train), str(test)) == ('yes', 0.5)
    # the demo's list holds every train answer, in the model's format
    vl = data_dir / 'data/demo_vl'
    answers = load_answer_list(str(vl / 'gqa/answer2label.txt'))
    train_items = load_gqa_questions(
        str(vl / 'gqa/train_balanced_questions.json'))
    assert set(answers) == {item['answer'] for item in train_items}
    official = tmp_path / 'official.json'
    official.write_text(json.dumps({'0': dict(imageId='1', answer='no')}))
    with pytest.raises(ValueError, match='LAVIS'):
        load_gqa_questions(str(official))


# ------------------------------------------------------------ end to end
@pytest.mark.slow
def test_tools_run_the_projects(tmp_path, monkeypatch):
    """From a tree with the demo data: the GQA converter and answer-list
    tools, then tools/train.py on both demo configs (one epoch) with the
    repo root on PYTHONPATH, which `projects.*` custom imports need."""
    make_classification_demo(
        str(tmp_path / 'data/demo_cls'), num_train=8, num_val=4)
    make_vl_demo(
        str(tmp_path / 'data/demo_vl'),
        num_train=16,
        num_val=8,
        num_train_pairs=2,
        num_val_pairs=2,
        vocab_size=60)
    log = run_tool(
        osp.join(ROOT, 'projects/gqa/tools/vqa_to_gqa.py'),
        'data/demo_vl',
        cwd=tmp_path)
    assert 'majority-answer baseline on testdev' in log
    log = run_tool(
        osp.join(ROOT, 'projects/gqa/tools/build_gqa_answer_list.py'),
        'data/demo_vl/gqa/train_balanced_questions.json',
        '--out',
        'answers.txt',
        cwd=tmp_path)
    assert (tmp_path / 'answers.txt').read_text() == (
        tmp_path / 'data/demo_vl/gqa/answer2label.txt').read_text()

    monkeypatch.setenv('PYTHONPATH', ROOT)
    for cfg, metric in ((EXAMPLE_CFG, 'accuracy/top1'), (GQA_DEMO_CFG,
                                                         'GQA/acc')):
        log = run_tool(
            osp.join(ROOT, 'tools/train.py'),
            cfg,
            '--work-dir',
            'work',
            '--cfg-options',
            'train_cfg.max_epochs=1',
            'train_cfg.val_interval=1',
            'train_dataloader.batch_size=8',
            cwd=tmp_path)
        assert f'{metric}: ' in log


@pytest.mark.slow
def test_gqa_demo_beats_the_majority_baseline(tmp_path):
    """The README's GQA demo commands: full demo set, 8 epochs (about 2
    minutes), test-dev accuracy far above the majority answer's."""
    make_vl_demo(str(tmp_path / 'data/demo_vl'))
    log = run_tool(
        osp.join(ROOT, 'projects/gqa/tools/vqa_to_gqa.py'),
        'data/demo_vl',
        cwd=tmp_path)
    baseline = float(log.split('GQA acc ')[-1].split()[0])
    run_tool(
        osp.join(ROOT, 'tools/train.py'),
        GQA_DEMO_CFG,
        '--work-dir',
        'work',
        cwd=tmp_path)
    log = run_tool(
        osp.join(ROOT, 'tools/test.py'),
        GQA_DEMO_CFG,
        'work/epoch_8.pth',
        '--work-dir',
        'work',
        cwd=tmp_path)
    acc = float(log.split('GQA/acc: ')[-1].split()[0])
    assert baseline < 0.15 and acc > 0.45, (baseline, acc)
