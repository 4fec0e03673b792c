"""The captioning demo of the README, end to end: make the VL demo data,
train the tiny captioner with tools/train.py, score it with tools/test.py
(CaptionMetric on the 64 val scenes), caption an image with mmpretrain's
ImageCaptionInferencer.

The bar: the held-out CIDEr must be well above that of the single most
frequent training caption given to every val image (both measured here with
the same metric): more than twice it and 0.8 above it. Measured: the demo's
CIDEr 2.129 after its 12 epochs (BLEU-4 0.483), the most frequent caption's
("a yellow circle on the left") 0.831 (BLEU-4 0.259).
"""
import glob
import json
import os.path as osp
import re
from collections import Counter

import pytest
from helpers import ROOT, run_tool

CFG = osp.join(ROOT, 'configs/beit3/captioning/'
               'beit3-tiny-p8_caption_1xb32-12e_demo-vl.py')
DATA = 'data/demo_vl'


def most_frequent_caption_scores(cwd) -> dict:
    """CaptionMetric of the most frequent training caption on every val
    image."""
    from beit3_mm.evaluation.metrics import CaptionMetric
    train_file = osp.join(cwd, DATA, 'annotations/coco_karpathy_train.json')
    with open(train_file) as f:
        train = json.load(f)
    caption = Counter(item['caption'] for item in train).most_common(1)[0][0]
    gt_file = osp.join(cwd, DATA, 'annotations/captions_val.json')
    with open(gt_file) as f:
        gt = json.load(f)
    metric = CaptionMetric(ann_file=gt_file)
    return metric.score({img['id']: caption for img in gt['images']}, gt)


@pytest.mark.slow
def test_caption_demo_beats_the_most_frequent_caption(tmp_path, monkeypatch):
    run_tool(osp.join(ROOT, 'tools/misc/make_demo_data.py'), 'vl', '--out',
             DATA, cwd=tmp_path)
    run_tool(osp.join(ROOT, 'tools/train.py'), CFG, '--work-dir', 'work',
             cwd=tmp_path)
    # validation (once, after the last epoch) keeps the best checkpoint
    # by CIDEr
    assert glob.glob(
        str(tmp_path / 'work/best_coco-caption_CIDEr_epoch_*.pth'))
    log = run_tool(osp.join(ROOT, 'tools/test.py'), CFG, 'work/epoch_12.pth',
                   '--work-dir', 'work', cwd=tmp_path)
    scores = {
        k: float(v)
        for k, v in re.findall(r'coco-caption/(\w+): ([\d.]+)', log)
    }
    baseline = most_frequent_caption_scores(str(tmp_path))
    print(f'demo CIDEr {scores["CIDEr"]:.3f}, most frequent training '
          f'caption {baseline["CIDEr"]:.3f}')
    assert scores['CIDEr'] > 2 * baseline['CIDEr']
    assert scores['CIDEr'] > baseline['CIDEr'] + 0.8
    assert scores['Bleu_4'] > baseline['Bleu_4']

    # mmpretrain's inferencer with the config and the trained checkpoint
    # (the config's tokenizer path is relative to the data's folder)
    import beit3_mm  # noqa: F401
    from mmpretrain import ImageCaptionInferencer
    monkeypatch.chdir(tmp_path)
    inferencer = ImageCaptionInferencer(
        model=CFG, pretrained=str(tmp_path / 'work/epoch_12.pth'),
        device='cpu')
    image = str(tmp_path / DATA / 'images/val/000000000641.png')
    (result, ) = inferencer(image)
    words = set(result['pred_caption'].split())
    assert words & {'left', 'right'} and words & {
        'red', 'green', 'blue', 'yellow'
    }, result
