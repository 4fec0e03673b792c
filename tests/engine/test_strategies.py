"""Training under DeepSpeed ZeRO and FSDP (``configs/_base_/strategies``).

The multi-process tests train the classification demo with 2 gloo
processes through ``tools/dist_train.sh`` and compare with a 1-process run
of mmengine's ``Runner`` on the same global batch, as
tests/engine/test_distributed.py does for DDP (same helpers, same
tolerance: 1e-4 relative). The strategies run in fp32 there (bf16 off), so
that only the sharding differs; their bf16 configs as shipped are checked
by a stop-and-resume that must end bit-identical to an uninterrupted run.
"""
import glob
import os.path as osp
import pickle
import subprocess
import sys

import pytest
import torch
from helpers import ROOT, run_dist_tool, run_tool
from test_distributed import (FAMILIES, TOLERANCE, config_path,
                              logged_losses, run_options,
                              save_initial_weights, weights)

import beit3_mm  # noqa: F401
from beit3_mm.engine.strategies import weights_only_torch_load

CONSOLIDATE = osp.join(ROOT, 'tools/model_converters',
                       'consolidate_checkpoint.py')
STRATEGIES = dict(
    zero2=('deepspeed_zero2_bf16.py', ['strategy.bf16.enabled=False']),
    zero3=('deepspeed_zero3_bf16.py', ['strategy.bf16.enabled=False']),
    fsdp=('fsdp_bf16.py', ['strategy.model_wrapper.mixed_precision=None']),
)
FAMILY = FAMILIES['classification']


def strategy_config(name: str, folder) -> str:
    """The demo classification config with the strategy's _base_ line."""
    path = str(folder / f'{name}.py')
    strategy = osp.join(ROOT, 'configs/_base_/strategies',
                        STRATEGIES[name][0])
    with open(path, 'w') as f:
        f.write(f'_base_ = [{config_path(FAMILY)!r}, {strategy!r}]\n')
    return path


def consolidated(checkpoint: str, out: str) -> dict:
    """``weights()`` of a strategy checkpoint, consolidated by the tool."""
    run_tool(CONSOLIDATE, checkpoint, out, cwd=osp.dirname(out))
    return weights(out)


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    cwd = tmp_path_factory.mktemp('strategies')
    FAMILY.make_data(str(cwd / FAMILY.data))
    return cwd


@pytest.fixture(scope='module')
def reference(workspace):
    """1-process Runner, fp32, on the global batch: losses and weights."""
    init = str(workspace / 'init.pth')
    save_initial_weights(FAMILY, init)
    work = str(workspace / 'single')
    run_tool(osp.join(ROOT, 'tools/train.py'), config_path(FAMILY),
             '--work-dir', work, '--cfg-options', f'load_from={init}',
             *run_options(FAMILY, 1), cwd=str(workspace))
    return init, logged_losses(work), weights(osp.join(work, 'epoch_1.pth'))


# ---- multi-process -------------------------------------------------------


DEEPSPEED_STEP_XFAIL = pytest.mark.xfail(
    reason='DeepSpeed (fp32, 1 or 2 processes) gives the same first loss but '
    'another second one than the Runner (1.5069 vs 1.5032 with 1 process, '
    'weight decay 0): its optimizer step differs from torch AdamW under '
    'mmengine (open)')


@pytest.mark.slow
@pytest.mark.parametrize('name', [
    pytest.param('zero2', marks=DEEPSPEED_STEP_XFAIL),
    pytest.param('zero3', marks=DEEPSPEED_STEP_XFAIL), 'fsdp'
])
def test_strategy_matches_one_process(name, workspace, reference,
                                      monkeypatch):
    """2 ranks, sharded, fp32: the losses and weights of the 1-process run
    (rtol 1e-4), through the consolidated checkpoint."""
    monkeypatch.chdir(workspace)
    init, losses, expected = reference
    work = str(workspace / name)
    run_dist_tool(
        'dist_train.sh', strategy_config(name, workspace), '2', '--work-dir',
        work, '--cfg-options', f'load_from={init}',
        *run_options(FAMILY, 2), *STRATEGIES[name][1], cwd='.',
        port=29650 + list(STRATEGIES).index(name))
    torch.testing.assert_close(logged_losses(work), losses, **TOLERANCE)
    got = consolidated(osp.join(work, 'epoch_1.pth'),
                       str(workspace / f'{name}_consolidated.pth'))
    assert got.keys() == expected.keys()
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], **TOLERANCE,
                                   msg=lambda m: f'{k}: {m}')


RESUME_XFAIL = pytest.mark.xfail(
    strict=True,
    reason='FSDP: after --resume the weights and optimizer state equal the '
    "checkpoint's, yet the second resumed step differs (open)")


@pytest.mark.slow
@pytest.mark.parametrize(
    'name', ['zero2', pytest.param('fsdp', marks=RESUME_XFAIL)])
def test_bf16_resume_is_exact(name, workspace, monkeypatch):
    """The shipped bf16 config, random flips on: 2 epochs straight, and 1
    epoch + --resume, end with the same weights, bit for bit."""
    monkeypatch.chdir(workspace)
    config = strategy_config(name, workspace)
    options = [
        'train_dataloader.batch_size=2', 'train_cfg.max_epochs=2',
        'train_cfg.val_begin=3', 'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.save_best=None',
        'default_hooks.logger.interval=1', 'log_processor.window_size=1'
    ]
    port = 29660 + list(STRATEGIES).index(name)
    full, resumed = (str(workspace / f'{name}_{w}')
                     for w in ('full', 'resumed'))
    run_dist_tool('dist_train.sh', config, '2', '--work-dir', full,
                  '--cfg-options', *options, cwd='.', port=port)
    out = run_dist_tool(
        'dist_train.sh', config, '2', '--work-dir', resumed, '--resume',
        osp.join(full, 'epoch_1.pth'), '--cfg-options', *options, cwd='.',
        port=port)
    assert 'resumed epoch: 1' in out
    a, b = (consolidated(osp.join(w, 'epoch_2.pth'), w + '.pth')
            for w in (full, resumed))
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---- single process ------------------------------------------------------


class Payload:
    """Runs code when unpickled."""

    def __reduce__(self):
        return (print, ('unpickled',))


def test_deepspeed_checkpoint_reads_are_weights_only(tmp_path):
    """DeepSpeed's loaders pass weights_only=False: inside
    weights_only_torch_load they read safely and refuse a payload."""
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import \
        TorchCheckpointEngine
    path = str(tmp_path / 'mp_rank_00_model_states.pt')
    torch.save(dict(module={'w': torch.ones(2)}), path)
    engine = TorchCheckpointEngine()
    with weights_only_torch_load():
        assert torch.equal(engine.load(path)['module']['w'], torch.ones(2))
    torch.save(dict(module={}, payload=Payload()), path)
    with weights_only_torch_load(), pytest.raises(
            RuntimeError, match='refusing to load .*pickles print'):
        engine.load(path)
    with pytest.raises(pickle.UnpicklingError):  # torch's own default
        torch.load(path)


def test_consolidate_refuses_a_payload(tmp_path):
    folder = tmp_path / 'epoch_1.pth'
    folder.mkdir()
    torch.save(dict(module={}, payload=Payload()),
               str(folder / 'mp_rank_00_model_states.pt'))
    result = subprocess.run(
        [sys.executable, CONSOLIDATE, str(folder), str(tmp_path / 'out.pth')],
        capture_output=True, text=True)
    assert result.returncode != 0
    assert 'refusing to load' in result.stderr
    assert 'unpickled' not in result.stdout
    assert not glob.glob(str(tmp_path / 'out.pth'))


def test_a_strategy_config_builds_the_flexible_runner():
    from mmengine.config import Config

    from beit3_mm.utils.launch import build_runner, uses_strategy
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs/_base_/strategies/fsdp_bf16.py'))
    assert uses_strategy(cfg) and cfg.runner_type == 'FlexibleRunner'
    cfg = Config(dict(strategy=dict(type='ColossalAIStrategy')))
    with pytest.raises(ValueError, match='use a DeepSpeed or FSDP strategy'):
        build_runner(cfg)


def test_fp16_on_the_cpu_stops_at_build_time():
    from mmengine.registry import STRATEGIES as REGISTRY
    if torch.cuda.is_available():
        pytest.skip('a GPU is visible')
    with pytest.raises(ValueError, match='use bf16'):
        REGISTRY.build(
            dict(type='BEiT3DeepSpeedStrategy', fp16=dict(enabled=True)))


def test_fsdp_wraps_each_multiway_layer():
    from beit3_mm.engine.strategies import (is_multiway_layer,
                                            multiway_layer_policy)
    from beit3_mm.models.layers import MultiwayTransformerLayer
    layer = MultiwayTransformerLayer(8, 2, 16)
    assert is_multiway_layer(layer)
    assert multiway_layer_policy(layer, False, 0)
    assert not multiway_layer_policy(torch.nn.Linear(2, 2), False, 0)
