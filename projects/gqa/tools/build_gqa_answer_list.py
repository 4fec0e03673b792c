"""Build the answer vocabulary of the BEiT-3 GQA head.

    python projects/gqa/tools/build_gqa_answer_list.py \
        data/gqa/annotations/train_balanced_questions.json \
        --out data/gqa/annotations/answer2label.txt

Every answer of the given (LAVIS-style) GQA question files given to at
least ``--min-count`` questions, in order of first occurrence, written in
the official BEiT-3 ``answer2label.txt`` format that ``BEiT3VQA`` reads.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '../../..'))
from beit3_mm.datasets import save_answer_list  # noqa: E402
from projects.gqa.beit3_gqa import build_gqa_answer_list  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('question_files', nargs='+')
    parser.add_argument('--out', required=True, help='answer2label.txt')
    parser.add_argument('--min-count', type=int, default=1)
    args = parser.parse_args()
    answers = build_gqa_answer_list(args.question_files, args.min_count)
    save_answer_list(answers, args.out)
    print(f'wrote {len(answers)} answers to {args.out}')


if __name__ == '__main__':
    main()
