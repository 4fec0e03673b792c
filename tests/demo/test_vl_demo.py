"""The vision-language demo set: deterministic, read by mmpretrain's
datasets, and every caption, answer and statement true of the pixels (as
read back by an independent pixel oracle)."""
import filecmp
import json
import os
import os.path as osp
import re
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from beit3_mm.datasets import load_answer_list
from beit3_mm.demo import COLOURS, make_vl_demo

KWARGS = dict(
    num_train=10, num_val=12, num_train_pairs=6, num_val_pairs=8,
    questions_per_image=4, vocab_size=90)


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('demo_vl'))
    return root, make_vl_demo(root, seed=1, **KWARGS)


def _load(root, rel):
    with open(osp.join(root, rel)) as f:
        return json.load(f)


# ------------------------------------------------------------ pixel oracle
def read_scene(path: str) -> dict:
    """{side: (colour, shape)} read from the pixels of a demo image."""
    img = np.asarray(Image.open(path).convert('RGB')).astype(np.int64)
    size = img.shape[1]
    palette = np.array(list(COLOURS.values()))
    scene = {}
    for side, half in (('left', img[:, :size // 2]),
                       ('right', img[:, size // 2:])):
        mask = half.max(-1) > 120  # the background is below 60
        if mask.sum() < 10:
            continue
        mean = half[mask].mean(0)
        colour = list(COLOURS)[np.abs(palette - mean).sum(1).argmin()]
        ys, xs = np.nonzero(mask)
        box = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        fill = box.mean()
        upside_down = (box & box[::-1]).sum() / (box | box[::-1]).sum()
        if fill > 0.9:
            shape = 'square'
        elif upside_down < 0.6:
            shape = 'triangle'
        elif fill > 0.7:
            shape = 'circle'
        else:
            shape = 'cross'
        scene[side] = (colour, shape)
    return scene


def answer(question: str, scene: dict) -> str:
    """The answer to a demo question, from the oracle's scene."""
    things = list(scene.values())
    patterns = [
        (r'how many shapes are there\?', lambda: str(len(things))),
        (r'what color is the shape on the (\w+)\?',
         lambda side: scene[side][0]),
        (r'what shape is on the (\w+)\?', lambda side: scene[side][1]),
        (r'where is the (\w+) (\w+)\?', lambda c, s: next(
            side for side, t in scene.items() if t == (c, s))),
        (r'what color is the (\w+)\?',
         lambda s: next(c for c, t in things if t == s)),
        (r'is there a (\w+) (\w+)\?',
         lambda c, s: 'yes' if (c, s) in things else 'no'),
        (r'how many (\w+) shapes are there\?',
         lambda c: str(sum(t[0] == c for t in things))),
    ]
    for pattern, fn in patterns:
        m = re.fullmatch(pattern, question)
        if m:
            return fn(*m.groups())
    raise AssertionError(f'unknown question {question!r}')


def caption_scene(caption: str) -> dict:
    """{side: (colour, shape)} that a caption states."""
    w = r'(\w+) (\w+)'
    for pattern, sides in (
            (rf'a {w} on the left and a {w} on the right', 'lr'),
            (rf'a {w} to the right of a {w}', 'rl'),
            (rf'two shapes: a {w} and a {w}', 'lr'),
    ):
        m = re.fullmatch(pattern, caption)
        if m:
            g = m.groups()
            return {
                dict(l='left', r='right')[side]: (g[2 * k], g[2 * k + 1])
                for k, side in enumerate(sides)
            }
    m = re.fullmatch(r'a single (\w+) in (\w+) on the (\w+) side', caption)
    if m:
        shape, colour, side = m.groups()
        return {side: (colour, shape)}
    m = re.fullmatch(rf'a {w} on the (\w+)', caption)
    if m:
        colour, shape, side = m.groups()
        return {side: (colour, shape)}
    m = re.fullmatch(rf'one {w} in the (\w+) half', caption)
    assert m, f'unknown caption {caption!r}'
    colour, shape, side = m.groups()
    return {side: (colour, shape)}


def statement_truth(sentence: str, left: dict, right: dict) -> bool:
    """The truth of a demo NLVR2 statement, from the two oracle scenes."""
    imgs = dict(left=list(left.values()), right=list(right.values()))

    def has(things, shape=None, colour=None):
        return any((shape is None or s == shape) and (
            colour is None or c == colour) for c, s in things)

    L, R = imgs['left'], imgs['right']
    patterns = [
        (r'the (\w+) image has two shapes',
         lambda side: len(imgs[side]) == 2),
        (r'both images have two shapes', lambda: len(L) == len(R) == 2),
        (r'the (\w+) image contains a (\w+) shape',
         lambda side, c: has(imgs[side], colour=c)),
    ]
    for pattern, fn in patterns:
        m = re.fullmatch(pattern, sentence)
        if m:
            return fn(*m.groups())
    raise AssertionError(f'unknown statement {sentence!r}')


# ------------------------------------------------------------------- tests
def test_deterministic(demo, tmp_path):
    root, files = demo
    again = str(tmp_path / 'again')
    assert make_vl_demo(again, seed=1, **KWARGS) == files
    for folder, _, names in os.walk(root):
        rel = osp.relpath(folder, root)
        for name in names:
            assert filecmp.cmp(
                osp.join(folder, name), osp.join(again, rel, name),
                shallow=False), osp.join(rel, name)
    other = str(tmp_path / 'other')
    make_vl_demo(other, seed=2, **KWARGS)
    assert not filecmp.cmp(
        osp.join(root, files['captions_val']),
        osp.join(other, files['captions_val']),
        shallow=False)


def test_captions_describe_the_images(demo):
    root, files = demo
    for split, num in (('train', KWARGS['num_train']),
                       ('val', KWARGS['num_val'])):
        data = _load(root, files[f'captions_{split}'])
        assert len(data['images']) == num
        assert len(data['annotations']) == 3 * num
        images = {img['id']: img for img in data['images']}
        for ann in data['annotations']:
            img = images[ann['image_id']]
            scene = read_scene(
                osp.join(root, 'images', split, img['file_name']))
            assert caption_scene(ann['caption']) == scene, (
                ann['caption'], scene)
    # every val caption has exactly one matching image
    val = _load(root, files['captions_val'])
    scenes = [
        read_scene(osp.join(root, 'images/val', img['file_name']))
        for img in val['images']
    ]
    for ann in val['annotations']:
        stated = caption_scene(ann['caption'])
        assert scenes.count(stated) == 1


def test_answers_are_true_of_the_images(demo):
    root, files = demo
    answers = load_answer_list(osp.join(root, files['vqa_answer_list']))
    kinds = Counter()
    for split in ('train', 'val'):
        questions = _load(root, files[f'vqa_{split}_questions'])['questions']
        anns = _load(root, files[f'vqa_{split}_annotations'])['annotations']
        assert len(questions) == len(anns) == KWARGS['questions_per_image'] * \
            KWARGS[f'num_{split}']
        for q, ann in zip(questions, anns):
            assert q['question_id'] == ann['question_id']
            assert q['image_id'] == ann['image_id']
            scene = read_scene(
                osp.join(root, 'images', split,
                         f'{q["image_id"]:012d}.png'))
            truth = answer(q['question'], scene)
            given = [a['answer'] for a in ann['answers']]
            assert len(given) == 10 and given.count(truth) >= 7, (
                q['question'], scene, given)
            assert ann['multiple_choice_answer'] == truth
            assert truth in answers
            kinds[ann['answer_type']] += 1
    assert set(kinds) == {'yes/no', 'number', 'other'}


def test_statements_are_true_of_the_pairs(demo):
    root, files = demo
    for split, num in (('train', KWARGS['num_train_pairs']),
                       ('dev', KWARGS['num_val_pairs'])):
        with open(osp.join(root, files[f'nlvr2_{split}'])) as f:
            lines = [json.loads(line) for line in f]
        assert len(lines) == num
        assert Counter(x['label'] for x in lines) == {
            'True': num // 2, 'False': num - num // 2}
        for x in lines:
            prefix = osp.join(root, 'nlvr2', split,
                              x['identifier'].rsplit('-', 1)[0])
            left, right = (read_scene(f'{prefix}-img{k}.png')
                           for k in range(2))
            assert str(statement_truth(x['sentence'], left,
                                       right)) == x['label'], x


def test_statements_alone_tell_nothing(tmp_path):
    """Each kind of statement is about as often true as false, so a model
    must read the images (the text alone gives chance)."""
    root = str(tmp_path / 'many')
    files = make_vl_demo(root, num_train=1, num_val=1, num_train_pairs=300,
                         num_val_pairs=2, img_size=32, vocab_size=60)
    with open(osp.join(root, files['nlvr2_train'])) as f:
        lines = [json.loads(line) for line in f]
    kinds = {}
    for x in lines:
        kind = re.sub(r'left|right', 'SIDE',
                      re.sub('|'.join(COLOURS), 'COLOUR', x['sentence']))
        kinds.setdefault(kind, []).append(x['label'] == 'True')
    assert len(kinds) == 3, sorted(kinds)
    for kind, truths in kinds.items():
        assert len(truths) > 60 and 0.4 < np.mean(truths) < 0.6, (
            kind, len(truths), np.mean(truths))


def test_mmpretrain_datasets_read_it(demo):
    from mmpretrain.datasets import (NLVR2, COCORetrieval, COCOVQA,
                                     Flickr30kRetrieval)
    root, files = demo
    train = COCORetrieval(
        ann_file=files['captions_train'], data_root=root, data_prefix='images')
    val = COCORetrieval(
        ann_file=files['captions_val'], data_root=root, data_prefix='images',
        test_mode=True)
    assert len(train) == 3 * KWARGS['num_train']
    assert len(val) == KWARGS['num_val'] and len(val[0]['text']) == 3
    assert all(osp.isfile(item['img_path']) for item in val)
    for split, num in (('train', 10), ('val', 12), ('test', 12)):
        f30k = Flickr30kRetrieval(
            data_root=root, data_prefix='images', ann_file=files['flickr30k'],
            split=split, test_mode=True)
        assert len(f30k) == num
        assert osp.isfile(f30k[0]['img_path'])
    vqa = COCOVQA(
        data_root=root,
        data_prefix='images/val',
        question_file=files['vqa_val_questions'],
        ann_file=files['vqa_val_annotations'])
    item = vqa[0]
    assert osp.isfile(item['img_path'])
    assert abs(sum(item['gt_answer_weight']) - 1) < 1e-6
    nlvr2 = NLVR2(
        data_root=root, ann_file=files['nlvr2_dev'],
        data_prefix='nlvr2/dev')
    assert len(nlvr2) == KWARGS['num_val_pairs']
    assert all(osp.isfile(p) for p in nlvr2[0]['img_path'])
    assert {nlvr2[i]['gt_label'] for i in range(len(nlvr2))} == {0, 1}


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_val=289), 'num_val=289, but only 288 different scenes'),
    (dict(questions_per_image=9), 'questions_per_image=9 is not in [1, 8]'),
    (dict(img_size=19), 'img_size=19 is too small'),
])
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make_vl_demo(str(tmp_path), **kwargs)
    assert not os.listdir(tmp_path)


def test_tokenizer_covers_all_texts(demo):
    from beit3_mm.models.multimodal import BEiT3Tokenizer
    root, files = demo
    tok = BEiT3Tokenizer(osp.join(root, files['tokenizer']))
    texts = [
        a['caption'] for a in _load(root, files['captions_val'])['annotations']
    ] + [
        q['question']
        for q in _load(root, files['vqa_val_questions'])['questions']
    ]
    ids = tok(texts)['input_ids']
    assert all(x[0] == 0 and x[-1] == 2 for x in ids)
    assert not any(tok.unk_token_id in x for x in ids)
    assert len(tok) < 128
