"""What ``tools/train.py`` and ``tools/test.py`` share: their common
arguments, the config they build, and launches without GPUs."""
import argparse
import os
import os.path as osp

import torch
import torch.distributed as dist
from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner


def add_launch_args(parser: argparse.ArgumentParser) -> None:
    """``--work-dir``, ``--cfg-options``, ``--launcher``, ``--local-rank``.
    """
    parser.add_argument('--work-dir', help='where to save logs and models')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. train_cfg.max_epochs=2')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config(args: argparse.Namespace) -> Config:
    """The config of ``args.config`` with the launch arguments applied;
    the work dir defaults to ``work_dirs/<config name>``."""
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    return cfg


def uses_strategy(cfg: Config) -> bool:
    """Whether ``cfg`` asks for mmengine's ``FlexibleRunner`` (a
    ``strategy`` or a ``runner_type``)."""
    return cfg.get('strategy') is not None or 'runner_type' in cfg


def build_runner(cfg: Config) -> Runner:
    """mmengine's ``Runner``, or the ``runner_type`` of ``cfg``
    (``FlexibleRunner`` when only a ``strategy`` is given)."""
    if not uses_strategy(cfg):
        return Runner.from_cfg(cfg)
    strategy = cfg.get('strategy') or {}
    if 'ColossalAI' in str(strategy.get('type', '')):
        raise ValueError('ColossalAI needs torch <= 2.5.1, this stack has '
                         f'torch {torch.__version__}: use a DeepSpeed or FSDP '
                         'strategy (configs/_base_/strategies)')
    if ('DeepSpeed' in str(strategy.get('type', ''))
            and cfg.get('launcher', 'none') == 'none'):
        raise ValueError('DeepSpeed needs a distributed launch: use '
                         'tools/dist_train.sh / dist_test.sh (1 process is '
                         'fine), or test a checkpoint consolidated by '
                         'tools/model_converters/consolidate_checkpoint.py '
                         'with the task config')
    cfg.setdefault('runner_type', 'FlexibleRunner')
    return RUNNERS.build(cfg)


def setup_launch(cfg: Config) -> None:
    """Let a ``pytorch`` (torchrun) launch run on machines without GPUs.

    mmengine's launcher pins each process to a CUDA device and wraps the
    model in DDP with ``device_ids=[LOCAL_RANK]``; on the CPU that fails.
    Here, when no GPU is visible, the process group starts on gloo before
    the runner (whose strategy then keeps it) and DDP (``Runner`` or
    ``FlexibleRunner``'s ``DDPStrategy``) gets ``device_ids=None``; the
    DeepSpeed and FSDP strategies of :mod:`beit3_mm.engine.strategies`
    handle the CPU themselves. GPU launches are left untouched.
    """
    if cfg.get('launcher', 'none') != 'pytorch' or torch.cuda.is_available():
        return
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    if uses_strategy(cfg):
        strategy = cfg.get('strategy') or dict(type='DDPStrategy')
        if strategy['type'] == 'DDPStrategy':
            strategy['model_wrapper'] = dict(
                dict(type='MMDistributedDataParallel',
                     broadcast_buffers=False),
                **(strategy.get('model_wrapper') or {}),
                device_ids=None)
            cfg.strategy = strategy
        return
    wrapper = dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper.update(cfg.get('model_wrapper_cfg') or {})
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def finish_launch() -> None:
    """Shut the process group down before the interpreter exits.

    mmengine's Runner leaves it running; at exit, gloo's threads can then be
    torn down while still joinable, which aborts a rank ("terminate called
    without an active exception") after a run that went well.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
