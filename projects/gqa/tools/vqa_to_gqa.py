"""Turn the VQA part of the vision-language demo set into a GQA set.

    python tools/misc/make_demo_data.py vl --out data/demo_vl
    python projects/gqa/tools/vqa_to_gqa.py data/demo_vl

writes, under ``data/demo_vl/gqa``, the files mmpretrain's ``GQA`` dataset
reads with ``data_root='data/demo_vl'``, ``data_prefix='images'``::

    gqa/train_balanced_questions.json    from the VQA train split
    gqa/testdev_balanced_questions.json  from the VQA val split
    gqa/answer2label.txt                 the answers of the train split

One answer per question (the annotators' majority), images as
``<split>/<file name>``. It prints the majority-answer baseline.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '../../..'))
from projects.gqa.beit3_gqa import (  # noqa: E402
    majority_baseline, make_gqa_demo)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('root', help='the VL demo set (data/demo_vl)')
    parser.add_argument(
        '--out', default='gqa', help='output folder, relative to root')
    args = parser.parse_args()
    files = {
        k: osp.join(args.root, v)
        for k, v in make_gqa_demo(args.root, args.out).items()
    }
    for name, path in files.items():
        print(f'{name}: {path}')
    answer, acc = majority_baseline(files['train'], files['testdev'])
    print(f'majority-answer baseline on testdev: {answer!r}, GQA acc '
          f'{acc:.4f}')


if __name__ == '__main__':
    main()
