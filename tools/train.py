"""Train a beit3-mm model with mmengine's Runner, or its FlexibleRunner
when the config names a ``strategy`` (``configs/_base_/strategies``).

Works for any beit3-mm config, whichever library (mmpretrain, mmdet, mmseg)
its ``default_scope`` names.
"""
import argparse

from mmengine.config import Config

from beit3_mm.utils import (add_launch_args, finish_launch, load_config,
                            setup_launch)
from beit3_mm.utils.launch import build_runner


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a beit3-mm model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or from the latest one in '
        'the work dir when no path is given')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed precision training: bf16 autocast on the CPU, AMP on '
        'GPUs (bf16 where supported, else fp16); under DeepSpeed, bf16')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the lr by the actual batch size against '
        'auto_scale_lr.base_batch_size')
    add_launch_args(parser)
    return parser.parse_args()


def apply_train_args(cfg: Config, args: argparse.Namespace) -> None:
    if args.amp:
        strategy = cfg.get('strategy') or {}
        if 'DeepSpeed' in str(strategy.get('type', '')):
            if not strategy.get('fp16', {}).get('enabled', False):
                strategy['bf16'] = dict(strategy.get('bf16') or {},
                                        enabled=True)
        else:
            cfg.optim_wrapper.type = 'MixedPrecisionOptimWrapper'
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    if args.auto_scale_lr:
        cfg.auto_scale_lr = dict(cfg.get('auto_scale_lr', {}), enable=True)


def main() -> None:
    args = parse_args()
    cfg = load_config(args)
    apply_train_args(cfg, args)
    setup_launch(cfg)
    build_runner(cfg).train()
    finish_launch()


if __name__ == '__main__':
    main()
