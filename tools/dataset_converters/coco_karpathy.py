"""Karpathy's COCO split to the caption files of mmpretrain's layout.

    python tools/dataset_converters/coco_karpathy.py \\
        data/coco/dataset_coco.json data/coco/annotations

writes ``coco_karpathy_{train,val,test}.json`` (mmpretrain's ``COCOCaption``
dataset; train = train + restval, one item per sentence) and
``coco_karpathy_{val,test}_gt.json`` (the ``ann_file`` of ``CaptionMetric``).
"""
import argparse
import os.path as osp

import mmengine

from beit3_mm.datasets import convert_karpathy


def main() -> None:
    parser = argparse.ArgumentParser(
        description='Karpathy dataset_coco.json to LAVIS-style caption files')
    parser.add_argument('karpathy_file', help='dataset_coco.json')
    parser.add_argument('out_dir', help='folder of the written files')
    args = parser.parse_args()
    for name, content in convert_karpathy(
            mmengine.load(args.karpathy_file)).items():
        path = osp.join(args.out_dir, f'{name}.json')
        mmengine.dump(content, path)
        if name.endswith('_gt'):
            print(f'{path}: {len(content["annotations"])} captions of '
                  f'{len(content["images"])} images')
        else:
            print(f'{path}: {len(content)} items')


if __name__ == '__main__':
    main()
