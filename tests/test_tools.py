"""tools/train.py, tools/test.py and tools/dist_train.sh on the demo data,
resuming, and a quiet import."""
import glob
import os.path as osp
import re
import subprocess
import sys

import pytest
from helpers import ROOT, run_dist_tool, run_tool

from beit3_mm.demo import make_classification_demo

DEMO_CFG = osp.join(ROOT, 'configs/beit3/classification/'
                    'beit3-tiny-p8_1xb32-40e_demo-shapes.py')


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo_cls')
    make_classification_demo(str(root), num_train=8, num_val=4)
    return str(root)


def data_opts(root):
    return [f'{split}_dataloader.dataset.data_root={root}'
            for split in ('train', 'val', 'test')]


@pytest.mark.slow
def test_train_resume_and_test(tmp_path, demo_root):
    work = str(tmp_path / 'work')
    base = [osp.join(ROOT, 'tools/train.py'), DEMO_CFG, '--work-dir', work,
            '--cfg-options', *data_opts(demo_root),
            'train_cfg.val_interval=1']
    out = run_tool(*base, 'train_cfg.max_epochs=2', cwd=tmp_path)
    assert 'Epoch(val) [2]' in out and 'accuracy/top1' in out
    assert osp.isfile(osp.join(work, 'epoch_2.pth'))

    out = run_tool(*base, 'train_cfg.max_epochs=3', '--resume',
                   cwd=tmp_path)
    assert 'resumed epoch: 2' in out
    assert re.search(r'Epoch\(train\) +\[3\]', out)
    assert not re.search(r'Epoch\(train\) +\[1\]', out)

    out = run_tool(osp.join(ROOT, 'tools/test.py'), DEMO_CFG,
                   osp.join(work, 'epoch_3.pth'), '--work-dir', work, '--out',
                   osp.join(work, 'preds.pkl'), '--cfg-options',
                   *data_opts(demo_root), cwd=tmp_path)
    assert 'Epoch(test)' in out and 'accuracy/top1' in out
    assert osp.isfile(osp.join(work, 'preds.pkl'))


def test_test_refuses_a_released_file(tmp_path, demo_root):
    """tools/test.py would load a released file's keys into nothing."""
    import torch
    released = str(tmp_path / 'beit3_base_patch16_224_in1k.pth')
    torch.save(dict(model={'beit3.vision_embed.cls_token': torch.zeros(3)}),
               released)
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools/test.py'), DEMO_CFG, released,
         '--cfg-options', *data_opts(demo_root)],
        cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0
    assert f'{released} is a released BEiT-3 file' in proc.stderr
    assert 'beit3_to_mm.py' in proc.stderr


@pytest.mark.slow
def test_dist_train_and_test_two_cpu_processes(tmp_path, demo_root):
    work = str(tmp_path / 'work')
    run_dist_tool('dist_train.sh', DEMO_CFG, '2', '--work-dir', work,
                  '--cfg-options', *data_opts(demo_root),
                  'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
                  cwd=tmp_path, port=29517)
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))
    log = open(glob.glob(osp.join(work, '*', '*.log'))[0]).read()
    # mmengine reports the world size as 'GPU number'
    assert 'Distributed training: True' in log and 'GPU number: 2' in log

    out = run_dist_tool('dist_test.sh', DEMO_CFG,
                        osp.join(work, 'epoch_1.pth'), '2', '--work-dir',
                        work, '--cfg-options', *data_opts(demo_root),
                        cwd=tmp_path, port=29518)
    assert 'Epoch(test)' in out and 'accuracy/top1' in out


def test_import_is_quiet():
    proc = subprocess.run([sys.executable, '-c', 'import beit3_mm'],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout == '' and proc.stderr == '', \
        proc.stderr


@pytest.mark.parametrize('out, error', [
    ('ckpt', 'is the checkpoint under test'),
    ('preds.json', 'must be a .pkl or .pickle file'),
])
def test_test_refuses_to_overwrite(tmp_path, out, error):
    """--out must be a pickle file and never the checkpoint under test."""
    ckpt = tmp_path / 'epoch_1.pkl'
    ckpt.write_bytes(b'weights')
    out = str(ckpt) if out == 'ckpt' else str(tmp_path / out)
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools/test.py'), DEMO_CFG,
         str(ckpt), '--out', out], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert ckpt.read_bytes() == b'weights'
    assert error in proc.stderr
