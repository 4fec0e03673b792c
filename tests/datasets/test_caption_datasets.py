"""Caption data: NoCaps one sample per image, mmpretrain's COCOCaption on
LAVIS files, and the Karpathy split converted to them."""
import json
import os.path as osp

import numpy as np
import pytest
from helpers import ROOT, run_tool
from mmengine.registry import METRICS, DefaultScope
from mmpretrain.registry import DATASETS
from PIL import Image

import beit3_mm  # noqa: F401
from beit3_mm.datasets import NoCapsImages, convert_karpathy
from beit3_mm.evaluation.metrics import caption as caption_module

TOOL = osp.join(ROOT, 'tools/dataset_converters/coco_karpathy.py')
PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(16, 16), interpolation='bicubic',
         backend='pillow'),
    dict(type='PackInputs', meta_keys=['image_id']),
]


def build(cfg):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return DATASETS.build(cfg)


def save_image(path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)


@pytest.fixture
def nocaps_root(tmp_path):
    """nocaps_val_4500_captions.json / nocaps_test_image_info.json layout."""
    (tmp_path / 'images').mkdir()
    domains = ['in-domain', 'near-domain', 'out-domain']
    images = [
        dict(id=i, file_name=f'{i:016x}.jpg', open_images_id=f'{i:016x}',
             height=8, width=8, domain=domains[i]) for i in range(3)
    ]
    for img in images:
        save_image(tmp_path / 'images' / img['file_name'])
    annotations = [
        dict(image_id=i, id=10 * i + j, caption=f'caption {j} of image {i}')
        for i in range(3) for j in range(10)
    ]
    (tmp_path / 'val.json').write_text(
        json.dumps(dict(images=images, annotations=annotations)))
    (tmp_path / 'test.json').write_text(
        json.dumps(dict(licenses=[], info={}, images=images)))
    return str(tmp_path)


def test_nocaps_one_sample_per_image(nocaps_root):
    cfg = dict(type='NoCapsImages', data_root=nocaps_root,
               data_prefix=dict(img_path='images'), pipeline=PIPELINE)
    val = build(dict(cfg, ann_file='val.json'))
    assert isinstance(val, NoCapsImages) and len(val) == 3
    info = val.get_data_info(1)
    assert info['image_id'] == 1 and info['domain'] == 'near-domain'
    assert info['img_path'] == osp.join(nocaps_root, 'images',
                                        f'{1:016x}.jpg')
    assert info['gt_caption'] == [f'caption {j} of image 1' for j in range(10)]
    assert val[2]['data_samples'].image_id == 2
    assert tuple(val[2]['inputs'].shape) == (3, 16, 16)

    test = build(dict(cfg, ann_file='test.json'))
    assert len(test) == 3 and test.get_data_info(0)['gt_caption'] is None
    # mmpretrain's NoCaps: one sample per caption; no test split at all
    assert len(build(dict(cfg, type='NoCaps', ann_file='val.json'))) == 30
    with pytest.raises(ValueError, match='need at least one array'):
        build(dict(cfg, type='NoCaps', ann_file='test.json'))


def karpathy_image(cocoid, split, num_sentences=2):
    prefix = 'train2014' if split in ('train', 'restval') else 'val2014'
    return dict(
        filepath=prefix,
        filename=f'COCO_{prefix}_{cocoid:012d}.jpg',
        imgid=cocoid % 100,
        split=split,
        cocoid=cocoid,
        sentids=list(range(num_sentences)),
        sentences=[
            dict(tokens=['a', 'b'], raw=f'Caption {j} of {cocoid}.',
                 imgid=cocoid % 100, sentid=cocoid * 10 + j)
            for j in range(num_sentences)
        ])


KARPATHY = dict(
    dataset='coco',
    images=[
        karpathy_image(9, 'train'),
        karpathy_image(25, 'restval', 3),
        karpathy_image(30, 'train'),
        karpathy_image(42, 'val'),
        karpathy_image(73, 'val'),
        karpathy_image(74, 'test', 5),
    ])


def test_karpathy_conversion():
    out = convert_karpathy(KARPATHY)
    assert sorted(out) == sorted([
        'coco_karpathy_train', 'coco_karpathy_val', 'coco_karpathy_test',
        'coco_karpathy_val_gt', 'coco_karpathy_test_gt'
    ])
    # train = train + restval, one item per sentence (LAVIS layout)
    train = out['coco_karpathy_train']
    assert len(train) == 2 + 3 + 2
    assert train[2] == dict(
        image='train2014/COCO_train2014_000000000025.jpg',
        caption='Caption 0 of 25.', image_id='coco_25')
    assert out['coco_karpathy_val'] == [
        dict(image=f'val2014/COCO_val2014_{i:012d}.jpg',
             caption=[f'Caption 0 of {i}.', f'Caption 1 of {i}.'])
        for i in (42, 73)
    ]
    test_gt = out['coco_karpathy_test_gt']
    assert [img['id'] for img in test_gt['images']] == [74]
    assert [a['caption'] for a in test_gt['annotations']] == [
        f'Caption {j} of 74.' for j in range(5)]
    assert all(a['image_id'] == 74 for a in test_gt['annotations'])

    bad = dict(images=[dict(karpathy_image(5, 'val'), filename='cat.jpg')])
    with pytest.raises(ValueError, match="cat.jpg: mmpretrain's COCOCaption"):
        convert_karpathy(bad)
    twice = dict(images=[karpathy_image(5, 'val'), karpathy_image(5, 'val')])
    with pytest.raises(ValueError, match='the val split has images of the'):
        convert_karpathy(twice)


def test_karpathy_tool_to_coco_caption_and_metric(tmp_path, monkeypatch):
    """The tool's files feed mmpretrain's COCOCaption as it comes, and its
    image ids are the ground truth's."""
    karpathy_file = tmp_path / 'dataset_coco.json'
    karpathy_file.write_text(json.dumps(KARPATHY))
    ann_dir = tmp_path / 'annotations'
    out = run_tool(TOOL, str(karpathy_file), str(ann_dir), cwd=tmp_path)
    assert 'coco_karpathy_train.json: 7 items' in out
    assert 'coco_karpathy_val_gt.json: 4 captions of 2 images' in out
    for img in KARPATHY['images']:
        (tmp_path / img['filepath']).mkdir(exist_ok=True)
        save_image(tmp_path / img['filepath'] / img['filename'])

    cfg = dict(type='COCOCaption', data_root=str(tmp_path), pipeline=PIPELINE)
    train = build(dict(cfg, ann_file='annotations/coco_karpathy_train.json'))
    assert len(train) == 7
    assert {int(train.get_data_info(i)['image_id'])
            for i in range(7)} == {9, 25, 30}
    val = build(dict(cfg, ann_file='annotations/coco_karpathy_val.json'))
    assert len(val) == 2
    assert val.get_data_info(1)['gt_caption'] == [
        'Caption 0 of 73.', 'Caption 1 of 73.']

    # predictions keyed by the dataset's ids score against the gt file
    monkeypatch.setattr(caption_module, 'java_available', lambda: False)
    metric = METRICS.build(
        dict(type='CaptionMetric', prefix='val',
             ann_file=str(ann_dir / 'coco_karpathy_val_gt.json')))
    metric.process({}, [
        dict(image_id=val[i]['data_samples'].image_id,
             pred_caption=val.get_data_info(i)['gt_caption'][0])
        for i in range(2)
    ])
    assert metric.evaluate(2)['val/Bleu_4'] == pytest.approx(1)


def test_lavis_files_load_as_they_come(tmp_path):
    """LAVIS's own layout (coco_karpathy_{train,val}.json), not ours."""
    (tmp_path / 'val2014').mkdir()
    save_image(tmp_path / 'val2014' / 'COCO_val2014_000000522418.jpg')
    save_image(tmp_path / 'val2014' / 'COCO_val2014_000000184613.jpg')
    (tmp_path / 'train.json').write_text(json.dumps([{
        'caption': 'A woman wearing a net on her head cutting a cake. ',
        'image': 'val2014/COCO_val2014_000000522418.jpg',
        'image_id': 'coco_522418'
    }]))
    (tmp_path / 'val.json').write_text(json.dumps([{
        'image': 'val2014/COCO_val2014_000000184613.jpg',
        'caption': [
            'A child holding a flowered umbrella and petting a yak.',
            'A young man holding an umbrella next to a herd of cattle.'
        ]
    }]))
    cfg = dict(type='COCOCaption', data_root=str(tmp_path), pipeline=PIPELINE)
    train = build(dict(cfg, ann_file='train.json'))
    assert int(train.get_data_info(0)['image_id']) == 522418
    assert train.get_data_info(0)['gt_caption'].startswith('A woman')
    val = build(dict(cfg, ann_file='val.json'))
    assert int(val[0]['data_samples'].image_id) == 184613
    assert len(val.get_data_info(0)['gt_caption']) == 2
