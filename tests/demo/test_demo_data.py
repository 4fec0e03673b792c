"""The COCO-format detection demo set: boxes, masks and pixels agree, and
pycocotools and mmdet read it."""
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from beit3_mm.demo import make_detection_demo

NUM_TRAIN, NUM_VAL, SIZE = 6, 2, 128


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('demo_det'))
    classes = make_detection_demo(root, NUM_TRAIN, NUM_VAL, SIZE, seed=1)
    return root, classes


def test_layout_and_annotations(demo_root):
    from pycocotools.coco import COCO
    root, classes = demo_root
    assert classes == ('circle', 'square', 'triangle')
    for split, num in (('train', NUM_TRAIN), ('val', NUM_VAL)):
        coco = COCO(osp.join(root, 'annotations', f'instances_{split}.json'))
        assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(
            classes)
        assert coco.getCatIds() == list(range(1, len(classes) + 1))
        assert len(coco.getImgIds()) == num
        for img_id in coco.getImgIds():
            info = coco.loadImgs(img_id)[0]
            assert (info['height'], info['width']) == (SIZE, SIZE)
            img = np.asarray(
                Image.open(osp.join(root, split, info['file_name'])))
            assert img.shape == (SIZE, SIZE, 3)
            brightness = img.astype(np.int64).sum(-1)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
            assert 1 <= len(anns) <= 3
            background = np.ones((SIZE, SIZE), dtype=bool)
            masks = []
            for ann in anns:
                assert ann['iscrowd'] == 0
                assert ann['category_id'] in coco.getCatIds()
                (poly, ) = ann['segmentation']
                xs, ys = np.array(poly[0::2]), np.array(poly[1::2])
                x, y, w, h = ann['bbox']
                np.testing.assert_allclose(
                    [x, y, x + w, y + h],
                    [xs.min(), ys.min(), xs.max(), ys.max()],
                    atol=1)
                assert 0 <= x and x + w <= SIZE and 0 <= y and y + h <= SIZE
                mask = coco.annToMask(ann).astype(bool)
                assert abs(mask.sum() - ann['area']) <= 0.1 * ann['area']
                masks.append(mask)
                background &= ~mask
            # The shapes do not overlap.
            assert sum(m.astype(int) for m in masks).max() == 1
            for mask in masks:
                # The shape is drawn there: all its pixels are bright.
                assert brightness[mask].mean() > 2 * brightness[
                    background].mean()
                assert (brightness[mask] > 300).mean() > 0.95
            # ... and nowhere else.
            assert (brightness[background] > 300).mean() < 0.01


def test_mmdet_coco_dataset(demo_root):
    from mmdet.datasets import CocoDataset
    root, classes = demo_root
    dataset = CocoDataset(
        data_root=root,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        metainfo=dict(classes=classes),
        pipeline=[],
        test_mode=False)
    assert len(dataset) == NUM_TRAIN
    num_instances = 0
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        assert osp.isfile(info['img_path'])
        assert osp.dirname(info['img_path']) == osp.join(root, 'train')
        for inst in info['instances']:
            x1, y1, x2, y2 = inst['bbox']
            assert 0 <= x1 < x2 <= SIZE and 0 <= y1 < y2 <= SIZE
            assert inst['bbox_label'] in range(len(classes))
            assert inst['ignore_flag'] == 0
            assert len(inst['mask']) == 1
        num_instances += len(info['instances'])
    assert num_instances >= NUM_TRAIN


def test_deterministic(tmp_path):
    def read(root, split):
        with open(osp.join(root, 'annotations', f'instances_{split}.json'),
                  'rb') as f:
            return f.read()

    a, b, c = (str(tmp_path / n) for n in 'abc')
    make_detection_demo(a, 3, 1, 64, seed=0)
    make_detection_demo(b, 3, 1, 64, seed=0)
    make_detection_demo(c, 3, 1, 64, seed=2)
    for split in ('train', 'val'):
        assert read(a, split) == read(b, split)
        assert read(a, split) != read(c, split)
    for name in ('000000.png', '000002.png'):
        with open(osp.join(a, 'train', name), 'rb') as fa, open(
                osp.join(b, 'train', name), 'rb') as fb:
            assert fa.read() == fb.read()
