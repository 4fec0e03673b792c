"""Every checkpoint mmengine reads goes through the safe reader: a pickle
payload never runs, even with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, and the
error names the file and what it refused, without unsafe advice."""
import http.server
import os
import os.path as osp
import subprocess
import sys
import threading
from functools import partial

import pytest
import torch
from helpers import ROOT
from mmengine.runner import CheckpointLoader, load_checkpoint
from mmengine.runner.checkpoint import _load_checkpoint

import beit3_mm.utils.safe_load as safe_load
from beit3_mm.demo import make_classification_demo
from beit3_mm.utils import last_checkpoint_read, read_checkpoint

DEMO_CFG = osp.join(
    ROOT, 'configs/beit3/classification/'
    'beit3-tiny-p8_1xb32-40e_demo-shapes.py')
UNSAFE_ENV = dict(TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1')


class Payload:
    """Unpickling this creates ``marker``."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def refused_name() -> str:
    """How the weights-only unpickler names ``os.system``."""
    return f'{os.system.__module__}.system'


@pytest.fixture
def malicious(tmp_path):
    """A checkpoint whose unpickling would create ``marker``."""
    marker = tmp_path / 'PWNED'
    path = tmp_path / 'bad.pth'
    torch.save({'state_dict': {'x': torch.zeros(1)},
                'meta': Payload(str(marker))}, path)
    return str(path), marker


def assert_refused(message: str, path: str) -> None:
    assert path in message and refused_name() in message, message
    assert 'weights_only=False' not in message, message
    assert 'safe_globals' not in message, message


@pytest.mark.slow
@pytest.mark.parametrize('how', ['resume', 'load_from'])
def test_train_refuses_a_malicious_checkpoint(tmp_path, malicious, how):
    path, marker = malicious
    root = str(tmp_path / 'data')
    make_classification_demo(root, num_train=4, num_val=2)
    ckpt = ['--resume', path] if how == 'resume' else [f'load_from={path}']
    opts = [f'{split}_dataloader.dataset.data_root={root}'
            for split in ('train', 'val', 'test')]
    args = [sys.executable, osp.join(ROOT, 'tools/train.py'), DEMO_CFG,
            '--work-dir', str(tmp_path / 'work'), '--cfg-options', *opts,
            'train_cfg.max_epochs=1', *ckpt]
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True,
                          env=dict(os.environ, **UNSAFE_ENV))
    assert proc.returncode != 0
    assert not marker.exists()
    assert 'refusing to load' in proc.stderr, proc.stderr[-3000:]
    assert_refused(proc.stderr, path)


@pytest.mark.parametrize('load', [
    lambda path: _load_checkpoint(path),
    lambda path: load_checkpoint(torch.nn.Linear(1, 1), path),
    lambda path: CheckpointLoader.load_checkpoint(path),
], ids=['_load_checkpoint', 'load_checkpoint', 'CheckpointLoader'])
def test_mmengine_entries_read_safely(malicious, monkeypatch, load):
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    path, marker = malicious
    with pytest.raises(RuntimeError, match='refusing to load') as info:
        load(path)
    assert not marker.exists()
    assert_refused(str(info.value), path)


def test_schemes_are_the_safe_readers():
    get = CheckpointLoader._get_checkpoint_loader
    assert get('work_dirs/epoch_1.pth') is safe_load.load_from_local
    assert get('https://host/a.pth') is safe_load.load_from_http
    assert get('s3://bucket/a.pth') is safe_load.load_from_ceph
    assert get('cluster:petrel://bucket/a.pth') is safe_load.load_from_ceph


def test_http_reads_safely(tmp_path, malicious, monkeypatch):
    """An http(s) URL (mmengine passes weights_only=False through
    torch.hub) is read with weights_only=True, and is remembered."""
    path, marker = malicious
    torch.save({'state_dict': {'w': torch.ones(2, 3)}}, tmp_path / 'good.pth')
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'hub'))
    handler = partial(http.server.SimpleHTTPRequestHandler,
                      directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f'http://127.0.0.1:{server.server_address[1]}'
    try:
        ckpt = _load_checkpoint(f'{url}/good.pth')
        assert ckpt['state_dict']['w'].shape == (2, 3)
        assert last_checkpoint_read().path == f'{url}/good.pth'
        with pytest.raises(RuntimeError, match='refusing to load') as info:
            _load_checkpoint(f'{url}/bad.pth')
    finally:
        server.shutdown()
        server.server_close()
    assert not marker.exists()
    assert_refused(str(info.value), f'{url}/bad.pth')


def test_s3_reads_safely(malicious, monkeypatch):
    path, marker = malicious

    class Backend:

        def get(self, filepath):
            with open(path, 'rb') as f:
                return f.read()

    monkeypatch.setattr(safe_load, 'get_file_backend',
                        lambda *args, **kwargs: Backend())
    with pytest.raises(RuntimeError, match='refusing to load') as info:
        _load_checkpoint('s3://bucket/bad.pth')
    assert not marker.exists()
    assert_refused(str(info.value), 's3://bucket/bad.pth')


def test_other_errors_give_no_unsafe_advice(tmp_path):
    """torch's message for a TorchScript archive advises weights_only=False:
    the reader keeps the reason, not the advice."""
    path = str(tmp_path / 'scripted.pt')
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    with pytest.raises(RuntimeError, match='not a readable') as info:
        read_checkpoint(path)
    assert path in str(info.value) and 'TorchScript' in str(info.value)
    assert 'weights_only=False' not in str(info.value)
    assert 'weights_only` set to `False' not in str(info.value)


def test_reads_are_remembered(tmp_path):
    path = str(tmp_path / 'epoch_1.pth')
    torch.save({'state_dict': {'backbone.w': torch.zeros(2, 3)},
                'meta': {}}, path)
    _load_checkpoint(path, map_location='cpu')
    read = last_checkpoint_read()
    assert read.path == path and read.shapes == {'backbone.w': (2, 3)}
    released = str(tmp_path / 'released.pth')
    torch.save({'model': {'beit3.w': torch.zeros(4)}}, released)
    read_checkpoint(released)
    assert last_checkpoint_read().shapes == {'beit3.w': (4, )}
