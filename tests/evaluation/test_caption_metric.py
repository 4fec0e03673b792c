"""CaptionMetric and NoCapsMetric: parity with COCOEvalCap (less SPICE), the
no-Java fallback, de-duplication, result files and bad input."""
import json
import logging

import pytest
from mmengine.registry import METRICS

import beit3_mm  # noqa: F401
from beit3_mm.evaluation.metrics import caption as caption_module
from beit3_mm.evaluation.metrics.caption import (java_available, ptb_tokenize,
                                                 python_ptb_tokenize)

needs_java = pytest.mark.skipif(
    not java_available(), reason='Java (for the PTB tokenizer) is missing')

# COCO-like ground truths: odd casing, quotes, contractions, trailing
# spaces and periods, as the real annotations have.
GT = {
    11: ['A man riding a wave on top of a surfboard.',
         'A surfer rides a large wave in the ocean. ',
         "A person on a surf board riding a wave",
         'a man in a wet suit surfing on a wave'],
    22: ['Two dogs playing with a frisbee in a grassy field.',
         "A dog's mouth holds a red frisbee, while another dog watches.",
         'Two brown dogs (one jumping) play in the park!',
         'dogs chasing a "flying disc" on the grass'],
    33: ['A plate of food with broccoli, rice and meat.',
         "There's a white plate w/ veggies on the table",
         'A close-up of a dinner plate full of food.',
         'Food that is on a plate on a wooden table .'],
    44: ['A red double-decker bus driving down a city street.',
         'The bus is parked next to the curb in the U.S. city',
         "A big bus doesn't fit in the narrow street; cars wait.",
         'a tall red bus on a street next to buildings'],
    55: ['A cat sleeping on a laptop keyboard.',
         "The cat's lying on top of someone's computer",
         'A gray cat naps on an open laptop on a desk.',
         'cat laying on a keyboard of a laptop computer'],
}
PREDS = {
    11: 'a man riding a wave on a surfboard',
    22: 'two dogs playing with a frisbee in the grass',
    33: 'a plate of food with broccoli and rice',
    44: 'a red bus driving down a street',
    55: 'a cat laying on a laptop computer',
}
DOMAINS = {11: 'in-domain', 22: 'in-domain', 33: 'near-domain',
           44: 'near-domain', 55: 'out-domain'}
STANDARD = ['Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4', 'METEOR', 'ROUGE_L',
            'CIDEr']


class StubMeteor:
    """METEOR's Java process loads for ~10 s: tests of other things use
    this stand-in."""

    def method(self):
        return 'METEOR'

    def compute_score(self, gts, res):
        return 0.5, [0.5] * len(gts)


@pytest.fixture
def stub_meteor(monkeypatch):
    monkeypatch.setattr(caption_module, 'Meteor', StubMeteor)


def write_gt(path, gt=GT, domains=None):
    images = [dict(id=k, file_name=f'{k}.jpg') for k in gt]
    for img in images:
        if domains:
            img['domain'] = domains[img['id']]
    annotations = [
        dict(image_id=k, id=10 * k + i, caption=c)
        for k, caps in gt.items() for i, c in enumerate(caps)
    ]
    path.write_text(json.dumps(dict(images=images, annotations=annotations)))
    return str(path)


def run_metric(cfg, preds=PREDS, duplicates=None):
    """Build, process two batches (image ids as str, as mmpretrain's
    COCOCaption yields them) and evaluate."""
    metric = METRICS.build(cfg)
    samples = [dict(image_id=str(k), pred_caption=c)
               for k, c in list(preds.items()) + (duplicates or [])]
    metric.process({}, samples[:3])
    metric.process({}, samples[3:])
    return metric.evaluate(len(samples))


def coco_eval_cap(gt_file, preds, monkeypatch):
    """pycocoevalcap's own evaluation, SPICE replaced by a no-op."""
    from pycocoevalcap import eval as cap_eval
    from pycocotools.coco import COCO

    class NoSpice:

        def method(self):
            return 'SPICE'

        def compute_score(self, gts, res):
            return 0.0, [0.0] * len(gts)

    monkeypatch.setattr(cap_eval, 'Spice', NoSpice)
    coco = COCO(gt_file)
    res = coco.loadRes([dict(image_id=k, caption=c) for k, c in preds.items()])
    evaluator = cap_eval.COCOEvalCap(coco, res)
    evaluator.params['image_id'] = res.getImgIds()
    evaluator.evaluate()
    evaluator.eval.pop('SPICE')
    return evaluator.eval


@needs_java
def test_parity_with_coco_eval_cap(tmp_path, monkeypatch):
    gt_file = write_gt(tmp_path / 'gt.json')
    ours = run_metric(dict(type='CaptionMetric', ann_file=gt_file))
    ref = coco_eval_cap(gt_file, PREDS, monkeypatch)
    assert sorted(ref) == sorted(STANDARD)
    assert ours == {f'coco-caption/{k}': pytest.approx(v, rel=1e-12)
                    for k, v in ref.items()}
    assert ours['coco-caption/CIDEr'] > 0.5
    # a subset of the gt images, as COCOEvalCap scores the predicted ones
    from pycocoevalcap import eval as cap_eval
    monkeypatch.setattr(cap_eval, 'Meteor', StubMeteor)
    monkeypatch.setattr(caption_module, 'Meteor', StubMeteor)
    part = {k: PREDS[k] for k in (22, 44)}
    ours = run_metric(dict(type='CaptionMetric', ann_file=gt_file), part)
    ref = coco_eval_cap(gt_file, part, monkeypatch)
    assert ours == {f'coco-caption/{k}': pytest.approx(v, rel=1e-12)
                    for k, v in ref.items()}


@needs_java
def test_python_tokenizer_matches_ptb():
    sentences = [c for caps in GT.values() for c in caps]
    sentences += list(PREDS.values()) + [
        'The U.S.A. team, at 3:30 p.m., wins $5 (or 50%)...',
        "It's a t-shirt -- isn't it?! Mr. Smith's dogs' toys.",
        'A "STOP" sign; 1,000 cars: #1 fan, #fun.', '', '  spaces  ',
        'two lines\r\nin one caption', 'the last one'
    ]
    assert python_ptb_tokenize(sentences) == ptb_tokenize(sentences)


def test_without_java(tmp_path, monkeypatch, stub_meteor):
    """No Java: one log line, Python tokenisation, no METEOR; the other
    scores close to the standard ones."""
    gt_file = write_gt(tmp_path / 'gt.json')
    cfg = dict(type='CaptionMetric', ann_file=gt_file)
    ref = run_metric(cfg) if java_available() else None
    monkeypatch.setenv('PATH', str(tmp_path))
    assert not java_available()
    logs = []
    monkeypatch.setattr(caption_module, 'print_log',
                        lambda msg, **kw: logs.append((msg, kw)))
    scores = run_metric(cfg)
    assert len(logs) == 1 and 'Java not found' in logs[0][0]
    assert logs[0][1]['level'] == logging.WARNING
    assert 'coco-caption/METEOR' not in scores
    assert sorted(scores) == sorted(f'coco-caption/{k}' for k in STANDARD
                                    if k != 'METEOR')
    if ref is not None:
        for k, v in scores.items():
            assert v == pytest.approx(ref[k], abs=1e-3), k
    with pytest.raises(RuntimeError, match='with_spice=True needs Java'):
        run_metric(dict(cfg, with_spice=True))


def test_dedup_and_result_file(tmp_path, stub_meteor):
    gt_file = write_gt(tmp_path / 'gt.json')
    prefix = str(tmp_path / 'out' / 'preds')
    cfg = dict(type='CaptionMetric', ann_file=gt_file, outfile_prefix=prefix)
    once = run_metric(cfg)
    # every image twice, as from padded ranks: the first caption counts
    twice = run_metric(cfg, duplicates=[(k, 'a dog') for k in PREDS])
    assert twice == once
    result = json.load(open(f'{prefix}.caption.json'))
    assert result == [dict(image_id=k, caption=c) for k, c in PREDS.items()]
    assert all(type(r['image_id']) is int for r in result)


def test_empty_predictions_are_reported(tmp_path, stub_meteor, monkeypatch):
    """An empty caption scores 0; one warning line counts them."""
    gt_file = write_gt(tmp_path / 'gt.json')
    logs = []
    monkeypatch.setattr(caption_module, 'print_log',
                        lambda msg, **kw: logs.append((msg, kw)))
    cfg = dict(type='CaptionMetric', ann_file=gt_file)
    full = run_metric(cfg)
    assert not [m for m, _ in logs if 'empty' in m]
    scores = run_metric(cfg, {**PREDS, 33: '', 55: ' '})
    (warning, ) = [(m, kw) for m, kw in logs if 'empty' in m]
    assert '2 of 5 predicted captions are empty (e.g. image 33)' in warning[0]
    assert warning[1]['level'] == logging.WARNING
    assert scores['coco-caption/CIDEr'] < full['coco-caption/CIDEr']


def test_missing_prediction_is_named(tmp_path):
    """A sample without pred_caption stops with its image id."""
    cfg = dict(type='CaptionMetric', ann_file=write_gt(tmp_path / 'gt.json'))
    with pytest.raises(ValueError, match="image 33 has no pred_caption"):
        run_metric(cfg, {**PREDS, 33: None})


@needs_java
def test_spice_only_when_asked(tmp_path, stub_meteor, monkeypatch):
    """SPICE (stubbed: it downloads CoreNLP) runs with with_spice=True
    only, overall and per NoCaps domain."""
    from pycocoevalcap.spice import spice

    class StubSpice:
        calls = 0

        def compute_score(self, gts, res):
            StubSpice.calls += 1
            return 0.25, [0.25] * len(gts)

    monkeypatch.setattr(spice, 'Spice', StubSpice)
    gt_file = write_gt(tmp_path / 'gt.json', domains=DOMAINS)
    assert 'coco-caption/SPICE' not in run_metric(
        dict(type='CaptionMetric', ann_file=gt_file))
    assert StubSpice.calls == 0
    scores = run_metric(
        dict(type='CaptionMetric', ann_file=gt_file, with_spice=True))
    assert scores['coco-caption/SPICE'] == 0.25
    scores = run_metric(
        dict(type='NoCapsMetric', ann_file=gt_file, with_spice=True))
    assert {k for k in scores if k.endswith('SPICE')} == {
        'nocaps/SPICE', 'nocaps/in-domain_SPICE', 'nocaps/near-domain_SPICE',
        'nocaps/out-domain_SPICE'}


def test_format_only(tmp_path):
    prefix = str(tmp_path / 'submission')
    scores = run_metric(
        dict(type='CaptionMetric', format_only=True, outfile_prefix=prefix))
    assert scores == {}
    assert len(json.load(open(f'{prefix}.caption.json'))) == len(PREDS)
    with pytest.raises(ValueError, match='needs outfile_prefix'):
        METRICS.build(dict(type='CaptionMetric', format_only=True))


def test_bad_ground_truth(tmp_path):
    missing = str(tmp_path / 'coco_karpathy_val_gt.json')
    with pytest.raises(FileNotFoundError) as err:
        METRICS.build(dict(type='CaptionMetric', ann_file=missing))
    assert missing in str(err.value) and 'coco_karpathy.py' in str(err.value)
    assert '\n' not in str(err.value)
    with pytest.raises(FileNotFoundError, match='ann_file=None'):
        METRICS.build(dict(type='CaptionMetric'))
    gt_file = write_gt(tmp_path / 'gt.json')
    with pytest.raises(ValueError, match=r"e\.g\. 99\) have no caption"):
        run_metric(dict(type='CaptionMetric', ann_file=gt_file),
                   {**PREDS, 99: 'a dog'})


def test_mmpretrain_scope_and_prefix(tmp_path):
    """The name is not shadowed by mmpretrain's or mmdet's caption metrics."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import METRICS as PRETRAIN_METRICS
    gt_file = write_gt(tmp_path / 'gt.json')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        metric = PRETRAIN_METRICS.build(
            dict(type='CaptionMetric', ann_file=gt_file, prefix='val'))
    assert type(metric) is caption_module.CaptionMetric
    assert metric.prefix == 'val'


def test_nocaps_domains(tmp_path, stub_meteor):
    gt_file = write_gt(tmp_path / 'nocaps_val.json', domains=DOMAINS)
    scores = run_metric(dict(type='NoCapsMetric', ann_file=gt_file))
    overall = run_metric(dict(type='CaptionMetric', ann_file=gt_file))
    assert {k: v for k, v in scores.items() if '-domain' not in k} == {
        k.replace('coco-caption', 'nocaps'): v for k, v in overall.items()}
    # each domain scored on its own images (the IDF of that domain)
    for domain in ('in-domain', 'near-domain', 'out-domain'):
        ids = [k for k, d in DOMAINS.items() if d == domain]
        part = run_metric(
            dict(type='CaptionMetric', ann_file=gt_file),
            {k: PREDS[k] for k in ids})
        assert scores[f'nocaps/{domain}_CIDEr'] == part['coco-caption/CIDEr']
    assert scores['nocaps/in-domain_CIDEr'] > 0
    assert scores['nocaps/out-domain_CIDEr'] == 0  # one image: IDF is 0
    no_domain = write_gt(tmp_path / 'coco.json')
    with pytest.raises(ValueError, match='has no images'):
        run_metric(dict(type='NoCapsMetric', ann_file=no_domain))


def test_nocaps_submission(tmp_path):
    prefix = str(tmp_path / 'nocaps_test')
    assert run_metric(dict(type='NoCapsMetric', format_only=True,
                           outfile_prefix=prefix)) == {}
    result = json.load(open(f'{prefix}.caption.json'))
    assert result == [dict(image_id=k, caption=c) for k, c in PREDS.items()]
