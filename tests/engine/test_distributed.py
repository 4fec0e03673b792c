"""Every task trains under DDP.

For each task family's demo config, a 2-process gloo run through
``tools/dist_train.sh`` (3 iterations) is compared with a 1-process run on
the same global batch: same samples per iteration (the sampler deals the
shuffled indices round-robin to the ranks), random augmentation off,
``LossMonitorHook`` averaging the logged loss over the ranks.

References. Classification, retrieval (features gathered with their
gradient), VQA and NLVR2 average per-sample losses: a 1-process run with
the global batch computes DDP's gradient, and only float rounding differs.
Detection and segmentation normalise their losses per rank
(RoI and mask counts) and the demo adapter's BatchNorm sees one rank's
batch, captioning averages over the rank's masked tokens and draws its
corruption at random in the model, so their reference is a 1-process run
of the per-rank batch with gradient accumulation over the ranks' batches
(``accumulative_counts=2``, constant lr: the scheduler steps per
micro-batch), which deals the same
samples to the same micro-batches, and torch's generator is seeded per
optimizer step before each micro-batch (``SeedPerStepHook`` in
tests/ddp_reference_hooks.py), so that each rank and its micro-batch draw
the same random numbers (Mask2Former's point sampling, the caption
corruption). Detection samplers take every candidate, and
Mask2Former's images hold the same number of masks (it divides its mask
losses by the count averaged over the ranks, the reference by each
image's own): both are then exact too.

Pretraining mixes sources per batch (``MixedSourceSampler``: rank ``r`` of
``W`` takes positions ``r, r + W, ...`` of each source's stream) and
normalises each loss per rank (over its masked patches and tokens, whose
counts differ between texts), with masks drawn from torch's generator.
Its reference is therefore the accumulating one, with one sample per
source and rank (per-rank batch 3): then rank ``r`` at step ``k`` and
micro-batch ``2k + r`` of a 1-process run take the same position of
every source's stream, i.e. the same samples, and ``SeedPerStepHook``
gives them the same masks.

Adam's ``eps`` is raised to 1e-3 in both runs: a parameter whose gradient
is zero in exact arithmetic (a key bias: the softmax ignores a shift) gets
float noise as its gradient, which Adam with ``eps=1e-8`` turns into
full-size steps that differ between any two runs.

A fast check beside it: one loss step of each demo config gives a gradient
to every trainable parameter (DDP fails on the second iteration
otherwise).
"""
import glob
import json
import os.path as osp
from typing import Callable, Dict, List, NamedTuple

import pytest
import torch
from helpers import ROOT, demo_vqkd_file, run_dist_tool, run_tool

from beit3_mm.demo import (make_classification_demo, make_detection_demo,
                           make_segmentation_demo, make_vl_demo)
from beit3_mm.demo.pretrain import make_pretrain_demo


class Family(NamedTuple):
    config: str  # under configs/beit3
    data: str  # the config's data root, made by make_data
    make_data: Callable[[str], object]
    batch_size: int  # per rank in the 2-process run
    options: List[str]  # random augmentation off
    reference: str = 'global-batch'  # or 'accumulate' (per-rank losses)
    by_epoch: bool = True  # else an IterBasedTrainLoop


def _vl(root: str) -> None:
    make_vl_demo(root, num_train=4, num_val=2, num_train_pairs=12,
                 num_val_pairs=2, questions_per_image=3)


def _pretrain(root: str) -> None:
    make_pretrain_demo(root, num_images=8, num_pairs=4, num_docs=16)
    demo_vqkd_file(osp.dirname(osp.dirname(root)))  # data/demo_vqkd.pth


PRETRAIN = 'pretrain/beit3-tiny-p8_pretrain_1xb48-1200it_demo-mixed.py'

# Each epoch-based family's train set holds NUM_ITERS x 2 x batch_size
# samples.
FAMILIES: Dict[str, Family] = dict(
    classification=Family(
        'classification/beit3-tiny-p8_1xb32-40e_demo-shapes.py',
        'data/demo_cls',
        lambda root: make_classification_demo(root, num_train=3, num_val=1),
        2, ['train_dataloader.dataset.pipeline.1.prob=0.0']),
    retrieval=Family('retrieval/beit3-tiny-p8_retrieval_1xb32-10e_demo-vl.py',
                     'data/demo_vl', _vl, 2, []),
    vqa=Family('vqa/beit3-tiny-p8_vqa_1xb32-15e_demo-vl.py', 'data/demo_vl',
               _vl, 2, []),
    nlvr2=Family('nlvr2/beit3-tiny-p8_nlvr2_1xb32-20e_demo-vl.py',
                 'data/demo_vl', _vl, 2, []),
    detection=Family(
        'detection/beit3-tiny-p16_mask-rcnn_simplefpn_1xb4-12e_demo-shapes.py',
        'data/demo_det',
        lambda root: make_detection_demo(root, num_train=6, num_val=1), 1,
        ['train_dataloader.dataset.pipeline.3.prob=0.0',
         'model.train_cfg.rpn.sampler.num=100000',
         'model.train_cfg.rcnn.sampler.num=100000'], 'accumulate'),
    # 6 of the 12 captions of the 4 train scenes, one per rank and step
    captioning=Family(
        'captioning/beit3-tiny-p8_caption_1xb32-12e_demo-vl.py',
        'data/demo_vl', _vl, 1, ['train_dataloader.dataset.indices=6'],
        'accumulate'),
    segmentation=Family(
        'segmentation/'
        'beit3-tiny-p16_vit-adapter_mask2former_1xb4-24e_demo-shapes.py',
        'data/demo_seg',
        # one shape each: every image has two masks (shape, background)
        lambda root: make_segmentation_demo(
            root, num_train=6, num_val=1, max_shapes=1), 1,
        ['train_dataloader.dataset.pipeline.2.prob=0.0'], 'accumulate'),
    # one image, text and pair per rank; no flip, no crop
    pretrain=Family(
        PRETRAIN, 'data/demo_pretrain', _pretrain, 3, [
            'train_dataloader.sampler.batch_size=3',
            'train_dataloader.dataset.datasets.0.pipeline.1.prob=0.0',
            'train_dataloader.dataset.datasets.0.pipeline.2'
            '.crop_ratio_range=[1.0,1.0]',
            'train_dataloader.dataset.datasets.0.pipeline.2'
            '.aspect_ratio_range=[1.0,1.0]'
        ], 'accumulate', by_epoch=False),
)
NUM_ITERS = 3
TOLERANCE = dict(rtol=1e-4, atol=1e-6)  # losses and weights


def config_path(family: Family) -> str:
    return osp.join(ROOT, 'configs/beit3', family.config)


# Demo configs not (yet) in FAMILIES, each with the reason.
NOT_IN_FAMILIES = {
    'vqkd/vqkd-tiny-p8-d1_demo-teacher_1xb32-20e_demo-shapes.py':
    'its teacher is the trained classification demo; only the 2-process '
    'codebook-usage all-reduce is tested (tests/models/test_vqkd_training.py)',
}


def test_every_demo_config_is_covered():
    """A new task's demo config joins FAMILIES, so that this file guards
    it under DDP too."""
    demos = glob.glob(osp.join(ROOT, 'configs/beit3/*/*_demo-*.py'))
    assert {osp.relpath(p, osp.join(ROOT, 'configs/beit3'))
            for p in demos} == {f.config for f in FAMILIES.values()
                                } | set(NOT_IN_FAMILIES)


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    """A folder with every demo config's data at its default root."""
    cwd = tmp_path_factory.mktemp('ddp')
    for family in FAMILIES.values():
        if not osp.isdir(cwd / family.data):
            family.make_data(str(cwd / family.data))
    return cwd


def run_options(family: Family, nprocs: int) -> List[str]:
    """One epoch of NUM_ITERS optimizer steps over the same samples, no
    validation, a checkpoint at its end, every iteration's own loss in the
    log."""
    batch_size = family.batch_size
    if nprocs == 1 and family.reference == 'accumulate':
        reference = ['optim_wrapper.accumulative_counts=2']
    elif nprocs == 1:
        reference, batch_size = [], 2 * batch_size
    else:
        reference = []
    if family.reference == 'accumulate':
        reference.append('param_scheduler=[]')
    if family.by_epoch:
        loop = ['train_cfg.max_epochs=1', 'train_cfg.val_begin=2',
                'default_hooks.checkpoint.interval=1']
    else:  # iterations count micro-batches
        iters = NUM_ITERS * (2 if nprocs == 1 and family.reference ==
                             'accumulate' else 1)
        loop = [f'train_cfg.max_iters={iters}',
                f'default_hooks.checkpoint.interval={iters}']
    return family.options + reference + loop + [
        f'train_dataloader.batch_size={batch_size}',
        'default_hooks.checkpoint.save_best=None',
        'default_hooks.logger.interval=1', 'log_processor.window_size=1',
        'optim_wrapper.optimizer.eps=1e-3'
    ]


def build_runner(family: Family, work_dir: str):
    """The Runner of the demo config (run it in the workspace), its model
    initialised."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(config_path(family))
    cfg.train_dataloader.batch_size = family.batch_size
    if 'batch_size' in cfg.train_dataloader.sampler:
        cfg.train_dataloader.sampler.batch_size = family.batch_size
    cfg.work_dir = work_dir
    runner = Runner.from_cfg(cfg)
    runner.model.init_weights()
    return runner


@pytest.mark.parametrize('name', list(FAMILIES))
def test_every_trainable_parameter_gets_a_gradient(name, tmp_path, workspace,
                                                    monkeypatch):
    """DDP stops at the second iteration on a trainable parameter that no
    loss uses (e.g. the mask token outside masked image modeling)."""
    monkeypatch.chdir(workspace)
    runner = build_runner(FAMILIES[name], str(tmp_path))
    model = runner.model.train()
    batch = next(iter(runner.build_dataloader(runner._train_dataloader)))
    loss, _ = model.parse_losses(
        model(**model.data_preprocessor(batch, True), mode='loss'))
    loss.backward()
    unused = [n for n, p in model.named_parameters()
              if p.requires_grad and p.grad is None]
    assert not unused


def save_initial_weights(family: Family, path: str) -> None:
    """The seeded init of the config's model, as a checkpoint both runs
    start from (``load_from``)."""
    model = build_runner(family, osp.dirname(path)).model
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)


def seeded_config(family: Family, nprocs: int, work: str) -> str:
    """The family's config with ``SeedPerStepHook`` added."""
    from mmengine.config import Config
    cfg = Config.fromfile(config_path(family))
    path = osp.join(work + '.config.py')
    with open(path, 'w') as f:
        f.write(f"""_base_ = [{config_path(family)!r}]
custom_imports = dict(
    imports={cfg.custom_imports.imports + ['ddp_reference_hooks']!r},
    allow_failed_imports=False)
custom_hooks = {cfg.custom_hooks!r} + [
    dict(type='SeedPerStepHook', micro_batches={3 - nprocs})]
""")
    return path


def train(family: Family, init: str, work: str, nprocs: int,
          port: int) -> None:
    """Train in the current folder (the workspace)."""
    config = config_path(family)
    if family.reference == 'accumulate':
        config = seeded_config(family, nprocs, work)
    opts = ['--work-dir', work, '--cfg-options', f'load_from={init}',
            *run_options(family, nprocs)]
    if nprocs == 1:
        run_tool(osp.join(ROOT, 'tools/train.py'), config, *opts, cwd='.',
                 env=dict(PYTHONPATH=osp.join(ROOT, 'tests')))
    else:
        run_dist_tool('dist_train.sh', config, str(nprocs), *opts, cwd='.',
                      port=port, env=dict(PYTHONPATH=osp.join(ROOT, 'tests')))


def logged_losses(work: str) -> List[float]:
    """The loss of every optimizer step (the mean over its micro-batches).
    """
    (path, ) = glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        losses = [row['loss'] for row in map(json.loads, f) if 'loss' in row]
    per_step = len(losses) // NUM_ITERS
    assert len(losses) == per_step * NUM_ITERS, losses
    return [
        sum(losses[i:i + per_step]) / per_step
        for i in range(0, len(losses), per_step)
    ]


def weights(work: str) -> Dict[str, torch.Tensor]:
    """The floating-point tensors of the run's last checkpoint."""
    with open(osp.join(work, 'last_checkpoint')) as f:
        path = f.read().strip()
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    return {k: v.float() for k, v in ckpt['state_dict'].items()
            if v.is_floating_point()}


@pytest.mark.slow
@pytest.mark.parametrize('name', list(FAMILIES))
def test_ddp_matches_one_process(name, tmp_path, workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    family = FAMILIES[name]
    port = 29600 + list(FAMILIES).index(name)
    init = str(tmp_path / 'init.pth')
    save_initial_weights(family, init)
    train(family, init, str(tmp_path / 'ddp'), 2, port)
    train(family, init, str(tmp_path / 'single'), 1, port)
    losses = (logged_losses(str(tmp_path / 'ddp')),
              logged_losses(str(tmp_path / 'single')))
    ddp, single = (weights(str(tmp_path / w)) for w in ('ddp', 'single'))
    assert ddp.keys() == single.keys()
    torch.testing.assert_close(losses[0], losses[1], **TOLERANCE)
    # With plain BatchNorm (the segmentation demo's adapter) each rank keeps
    # the running statistics of its own batches, and rank 0 saves its own.
    for k in (k for k in single if 'running_' not in k):
        torch.testing.assert_close(ddp[k], single[k], **TOLERANCE,
                                   msg=lambda m: f'{k}: {m}')
