"""Karpathy's COCO caption split (``dataset_coco.json``) as the files that
mmpretrain's :class:`COCOCaption` dataset (LAVIS layout) and
:class:`~beit3_mm.evaluation.CaptionMetric` read.

``dataset_coco.json``: ``images[*]`` with ``split`` (train, restval, val or
test), ``filepath``, ``filename``, ``cocoid`` and ``sentences[*].raw``. The
official BEiT-3 recipe trains on train + restval.
"""
import os.path as osp
from pathlib import Path
from typing import Dict, List

KARPATHY_SPLITS = dict(
    train=('train', 'restval'), val=('val', ), test=('test', ))


def lavis_image_id(image: str) -> int:
    """The image id mmpretrain's ``COCOCaption`` takes from an image path
    (the digits after the last '_' of the file name)."""
    stem = Path(image).stem.split('_')[-1]
    if not stem.isdigit():
        raise ValueError(f"{image}: mmpretrain's COCOCaption takes the image "
                         "id from the digits after the last '_' of the file "
                         'name, and this name has none')
    return int(stem)


def convert_karpathy(karpathy: dict) -> Dict[str, object]:
    """LAVIS-style annotations and COCO-format ground truths of each split.

    Returns:
        dict: ``coco_karpathy_train`` (one item per sentence of train and
        restval), ``coco_karpathy_{val,test}`` (one item per image, its
        captions in a list) and ``coco_karpathy_{val,test}_gt`` (COCO
        format, keyed by the ids mmpretrain's ``COCOCaption`` yields).
    """
    out: Dict[str, object] = {}
    for split, names in KARPATHY_SPLITS.items():
        items: List[dict] = []
        gt = dict(images=[], annotations=[])
        for img in karpathy['images']:
            if img['split'] not in names:
                continue
            image = osp.join(img.get('filepath', ''), img['filename'])
            image_id = lavis_image_id(image)
            captions = [s['raw'] for s in img['sentences']]
            if split == 'train':
                items += [
                    dict(image=image, caption=c, image_id=f'coco_{image_id}')
                    for c in captions
                ]
                continue
            items.append(dict(image=image, caption=captions))
            gt['images'].append(dict(id=image_id, file_name=image))
            gt['annotations'] += [
                dict(image_id=image_id, id=s['sentid'], caption=s['raw'])
                for s in img['sentences']
            ]
        ids = [img['id'] for img in gt['images']]
        if len(set(ids)) < len(ids):
            raise ValueError(f'the {split} split has images of the same id; '
                             'their ground truths would merge')
        out[f'coco_karpathy_{split}'] = items
        if split != 'train':
            out[f'coco_karpathy_{split}_gt'] = gt
    return out
