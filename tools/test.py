"""Evaluate a beit3-mm checkpoint with mmengine's Runner, or its
FlexibleRunner when the config names a ``strategy``."""
import argparse
import os.path as osp

from beit3_mm.utils import (add_launch_args, finish_launch, load_config,
                            setup_launch)
from beit3_mm.utils.launch import build_runner


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test a beit3-mm model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out', help='dump the raw predictions to this pickle file')
    add_launch_args(parser)
    args = parser.parse_args()
    # --out names a pickle file, never the checkpoint under test
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out must be a .pkl or .pickle file, got {args.out}')
    if (args.out is not None and osp.exists(args.out)
            and osp.exists(args.checkpoint)
            and osp.samefile(args.out, args.checkpoint)):
        parser.error(f'--out {args.out} is the checkpoint under test; '
                     f'dumping the predictions there would destroy it')
    return args


def main() -> None:
    args = parse_args()
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    if args.out is not None:
        evaluators = cfg.test_evaluator
        if not isinstance(evaluators, list):
            evaluators = [evaluators]
        cfg.test_evaluator = [
            *evaluators,
            dict(type='DumpResults', out_file_path=args.out)
        ]
    setup_launch(cfg)
    build_runner(cfg).test()
    finish_launch()


if __name__ == '__main__':
    main()
