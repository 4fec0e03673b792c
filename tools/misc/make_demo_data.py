"""Generate the embedded demo datasets under ``data/``.

    python tools/misc/make_demo_data.py classification --out data/demo_cls
    python tools/misc/make_demo_data.py detection --out data/demo_det
    python tools/misc/make_demo_data.py segmentation --out data/demo_seg
    python tools/misc/make_demo_data.py vl --out data/demo_vl
    python tools/misc/make_demo_data.py pretrain --out data/demo_pretrain
    # the VL set at the pretraining demo's size, to fine-tune its checkpoint
    python tools/misc/make_demo_data.py vl --out data/demo_vl_32px \
        --img-size 32
"""
import argparse

from beit3_mm.demo import (make_classification_demo, make_detection_demo,
                           make_pretrain_demo, make_segmentation_demo,
                           make_vl_demo)

TASKS = {
    'classification': make_classification_demo,
    'detection': make_detection_demo,
    'segmentation': make_segmentation_demo,
    # retrieval, VQA and NLVR2 share one set and tokenizer
    'vl': make_vl_demo,
    # images, a text corpus and image-text pairs, with their tokenizer
    'pretrain': make_pretrain_demo
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('task', choices=sorted(TASKS))
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--img-size', type=int, help='image side (default: the task\'s)')
    args = parser.parse_args()
    size = {} if args.img_size is None else dict(img_size=args.img_size)
    made = TASKS[args.task](args.out, seed=args.seed, **size)
    # classes, or for 'vl' and 'pretrain' a dict of the files written
    what = 'files' if isinstance(made, dict) else 'classes'
    print(f'wrote the {args.task} demo set to {args.out} '
          f'({what}: {", ".join(made.values() if what == "files" else made)})')


if __name__ == '__main__':
    main()
