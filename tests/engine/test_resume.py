"""Resume is exact: ``RandomStateHook`` and the checkpoint allow-list.

The end-to-end tests train the demo classifier (random flips and drop path
draw from the global NumPy and torch generators, validation every epoch)
to epoch 6 without a stop, and again with a stop after epoch 3 or a
SIGKILL in epoch 4 followed by ``--resume``: the two epoch_6.pth must hold
the same weights, optimizer state and random states, bit for bit; once in
one process, once (stop and resume) in two gloo processes seeded per rank.
"""
import os
import os.path as osp
import pickle
import random
import re
import signal
import subprocess
import sys
import time
from types import SimpleNamespace
from unittest.mock import Mock

import numpy as np
import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
from helpers import ROOT, run_dist_tool, run_tool
from mmengine.hooks import CheckpointHook

import beit3_mm  # noqa: F401 (allow-lists mmengine checkpoints)
from beit3_mm.demo import make_classification_demo
from beit3_mm.engine.hooks import RandomStateHook

DEMO_CFG = osp.join(ROOT, 'configs/beit3/classification',
                    'beit3-tiny-p8_1xb32-40e_demo-shapes.py')


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def draws() -> tuple:
    """A few numbers from each global generator."""
    return (random.random(), tuple(np.random.rand(3)),
            tuple(torch.rand(3).tolist()))


def fake_runner(resume: bool = True, hooks=()) -> SimpleNamespace:
    return SimpleNamespace(
        _resume=resume, logger=Mock(), hooks=list(hooks), epoch=0, iter=0,
        max_epochs=6, max_iters=60)


def saved_checkpoint(path: str) -> dict:
    """A checkpoint written with the states of ``seed_all(0)``, read back
    the way mmengine reads it."""
    seed_all(0)
    ckpt = dict(meta=dict(epoch=3))
    RandomStateHook().before_save_checkpoint(fake_runner(), ckpt)
    torch.save(ckpt, path)
    return torch.load(path, weights_only=True)


def test_resume_restores_the_states(tmp_path):
    ckpt = saved_checkpoint(str(tmp_path / 'epoch_3.pth'))
    expected = draws()  # what the uninterrupted run draws next
    seed_all(1)
    hook = RandomStateHook()
    hook.after_load_checkpoint(fake_runner(resume=True), ckpt)
    draws()  # the rest of the set-up may draw: before_train restores
    hook.before_train(fake_runner())
    assert draws() == expected


def test_load_from_keeps_the_seed(tmp_path):
    ckpt = saved_checkpoint(str(tmp_path / 'epoch_3.pth'))
    seed_all(1)
    expected = draws()
    seed_all(1)
    hook = RandomStateHook()
    hook.after_load_checkpoint(fake_runner(resume=False), ckpt)
    hook.before_train(fake_runner())
    assert draws() == expected


def test_other_world_size_keeps_the_seed(tmp_path):
    ckpt = saved_checkpoint(str(tmp_path / 'epoch_3.pth'))
    ckpt['random_states'] *= 2
    seed_all(1)
    expected = draws()
    seed_all(1)
    runner = fake_runner()
    hook = RandomStateHook()
    hook.after_load_checkpoint(runner, ckpt)
    hook.before_train(runner)
    assert draws() == expected
    assert 'random states of 2 ranks' in runner.logger.warning.call_args[0][0]


def test_validation_draws_nothing_from_training():
    seed_all(0)
    expected = draws()
    seed_all(0)
    hook, runner = RandomStateHook(), fake_runner()
    hook.before_val(runner)
    draws()
    best = {}
    hook.before_save_checkpoint(runner, best)  # a best checkpoint
    hook.after_val(runner)
    assert draws() == expected
    hook.after_load_checkpoint(runner, best)
    hook.before_train(runner)
    assert draws() == expected


def test_allow_list_reads_random_state_and_refuses_others(tmp_path):
    """mmengine reads checkpoints with torch.load's default (weights_only
    under torch >= 2.6): NumPy's uint32 state array loads, anything else
    outside the allow-list is still refused."""
    path = str(tmp_path / 'ckpt.pth')
    state = np.random.get_state()
    torch.save(dict(meta=dict(np_state=state)), path)
    loaded = torch.load(path, weights_only=True)['meta']['np_state']
    assert loaded[0] == 'MT19937' and np.array_equal(loaded[1], state[1])
    assert loaded[1].dtype == np.uint32

    torch.save(dict(meta=dict(obj=Mock)), path)
    with pytest.raises(pickle.UnpicklingError, match='Mock'):
        torch.load(path, weights_only=True)


def _distributed_worker(rank: int, port: int, path: str) -> None:
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch_dist.init_process_group('gloo', rank=rank, world_size=2)
    try:
        seed_all(10 + rank)
        runner = fake_runner(hooks=[CheckpointHook(interval=3)])
        hook = RandomStateHook()
        runner.epoch = 1  # epoch 2 ends: no checkpoint, nothing gathered
        hook.after_train_epoch(runner)
        assert hook._to_save is None
        runner.epoch = 2  # epoch 3 ends: CheckpointHook saves after this
        hook.after_train_epoch(runner)
        if rank == 0:  # Runner.save_checkpoint runs on rank 0 only
            ckpt = {}
            hook.before_save_checkpoint(runner, ckpt)
            torch.save(ckpt, path)
        expected = draws()
        torch_dist.barrier()

        seed_all(0)
        hook = RandomStateHook()
        hook.after_load_checkpoint(runner,
                                   torch.load(path, weights_only=True))
        hook.before_train(runner)
        assert draws() == expected
    finally:
        torch_dist.destroy_process_group()


@pytest.mark.slow
def test_every_rank_resumes_its_own_states(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    mp.spawn(_distributed_worker, args=(port, str(tmp_path / 'ckpt.pth')),
             nprocs=2)


# ---- end to end --------------------------------------------------------


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    """The demo data; the demo config runs the hook (beit3_runtime.py)."""
    root = tmp_path_factory.mktemp('resume')
    make_classification_demo(str(root / 'data'), num_train=16, num_val=2)
    return SimpleNamespace(root=str(root), data=str(root / 'data'),
                           cfg=DEMO_CFG)


def train_args(demo, work: str, max_epochs: int = 6) -> list:
    return [
        osp.join(ROOT, 'tools/train.py'), demo.cfg, '--work-dir', work,
        '--cfg-options', *[
            f'{split}_dataloader.dataset.data_root={demo.data}'
            for split in ('train', 'val', 'test')
        ], f'train_cfg.max_epochs={max_epochs}', 'train_cfg.val_interval=1',
        'train_dataloader.batch_size=4', 'model.backbone.drop_path_rate=0.1',
        'default_hooks.logger.interval=1'
    ]


def last_checkpoint(work: str) -> dict:
    return torch.load(osp.join(work, 'epoch_6.pth'), weights_only=True)


@pytest.fixture(scope='module')
def uninterrupted(demo) -> dict:
    work = osp.join(demo.root, 'uninterrupted')
    run_tool(*train_args(demo, work), cwd=demo.root)
    return last_checkpoint(work)


def assert_resumes_exactly(demo, work: str, uninterrupted: dict) -> None:
    """``--resume`` of the run stopped in ``work`` after epoch 3 ends in
    the state of the uninterrupted run."""
    out = run_tool(*train_args(demo, work), '--resume', cwd=demo.root)
    assert 'resumed epoch: 3' in out
    assert_same_training_state(uninterrupted, last_checkpoint(work))


def assert_same_training_state(a: dict, b: dict) -> None:
    assert a['meta']['epoch'] == b['meta']['epoch'] == 6
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for key, value in a['state_dict'].items():
        assert torch.equal(value, b['state_dict'][key]), key
    assert_equal(a['optimizer'], b['optimizer'])
    assert_equal(a['random_states'], b['random_states'])


def assert_equal(a, b, where: str = '') -> None:
    """Exact equality of nested containers of tensors."""
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_equal(a[k], b[k], f'{where}.{k}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_equal(x, y, f'{where}[{i}]')
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


@pytest.mark.slow
def test_resume_after_stop_is_exact(demo, uninterrupted):
    work = osp.join(demo.root, 'stopped')
    run_tool(*train_args(demo, work, max_epochs=3), cwd=demo.root)
    assert_resumes_exactly(demo, work, uninterrupted)


@pytest.mark.slow
def test_resume_after_kill_is_exact(demo, uninterrupted):
    work = osp.join(demo.root, 'killed')
    log = osp.join(demo.root, 'killed.log')
    with open(log, 'w') as f:
        proc = subprocess.Popen(
            [sys.executable, *train_args(demo, work)], cwd=demo.root,
            env=dict(os.environ, OMP_NUM_THREADS='1'), stdout=f,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not (osp.isfile(osp.join(work, 'epoch_3.pth')) and re.search(
                r'Epoch\(train\) +\[4\]\[', open(log).read())):
            assert proc.poll() is None, open(log).read()[-3000:]
            assert time.time() < deadline, 'epoch 4 did not start'
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not osp.exists(osp.join(work, 'epoch_4.pth')), 'killed too late'
    assert_resumes_exactly(demo, work, uninterrupted)


@pytest.mark.slow
def test_distributed_resume_is_exact(demo):
    """Two gloo processes with different seeds per rank: only rank 0 saves,
    and each rank resumes its own states."""
    def dist_train(work, max_epochs, *extra):
        config, *args = train_args(demo, work, max_epochs)[1:]
        return run_dist_tool('dist_train.sh', config, '2', *args,
                             'randomness.diff_rank_seed=True', *extra,
                             cwd=demo.root, port=29531)

    full, stopped = (osp.join(demo.root, f'dist_{name}')
                     for name in ('full', 'stopped'))
    dist_train(full, 6)
    dist_train(stopped, 3)
    assert 'resumed epoch: 3' in dist_train(stopped, 6, '--resume')
    a, b = last_checkpoint(full), last_checkpoint(stopped)
    assert len(a['random_states']) == 2
    assert not torch.equal(a['random_states'][0]['torch'],
                           a['random_states'][1]['torch'])
    assert_same_training_state(a, b)
