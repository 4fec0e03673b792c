"""Build the VQAv2 answer list of the released BEiT-3 VQA heads.

    python tools/misc/build_vqa_answer_list.py \\
        data/coco/annotations/v2_mscoco_train2014_annotations.json \\
        data/coco/annotations/v2_mscoco_val2014_annotations.json \\
        --out data/coco/annotations/answer2label.txt

The official way (unilm/beit3 ``VQAv2Dataset.make_dataset_index``): the
``multiple_choice_answer`` of every question of the given files, in that
order, normalised as in ViLT, kept when it occurs at least ``--min-count``
(9) times, in order of first occurrence. On the train2014 + val2014
annotations this gives the 3129 answers, in the order of the released
heads' outputs. The file is written in the official ``answer2label.txt``
format (one ``{"answer": ..., "label": i}`` per line), which the VQA configs
take as ``model.answer_list``.
"""
import argparse

from beit3_mm.datasets import build_answer_list, save_answer_list
from beit3_mm.datasets.vqa_answers import OFFICIAL_MIN_COUNT


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        'annotations', nargs='+', help='VQAv2 annotation files, in order')
    parser.add_argument('--out', required=True, help='answer list to write')
    parser.add_argument(
        '--min-count',
        type=int,
        default=OFFICIAL_MIN_COUNT,
        help=f'frequency threshold (official: {OFFICIAL_MIN_COUNT})')
    args = parser.parse_args()
    answers = build_answer_list(args.annotations, args.min_count)
    save_answer_list(answers, args.out)
    print(f'wrote {len(answers)} answers to {args.out}')


if __name__ == '__main__':
    main()
