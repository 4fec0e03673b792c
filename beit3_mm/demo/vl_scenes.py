"""The vision-language demo set: generated scenes of coloured shapes with
captions, questions and statements that are true of the pixels.

How to call it::

    from beit3_mm.demo import make_vl_demo
    files = make_vl_demo('data/demo_vl')        # or, from the shell:
    # python tools/misc/make_demo_data.py vl --out data/demo_vl

``files`` maps names to paths relative to the root (see
:func:`make_vl_demo`); everything is deterministic for a given ``seed``.
With ``data_root='data/demo_vl'`` mmpretrain's datasets read it as:

- ``COCORetrieval``: ``ann_file='annotations/captions_{train,val}.json'``,
  ``data_prefix='images'``. ``Flickr30kRetrieval``:
  ``ann_file='annotations/flickr30k_karpathy.json'``,
  ``data_prefix='images'``, ``split`` train / val / test (test lists the
  val images again).
- ``COCOCaption`` (LAVIS layout, as ``tools/dataset_converters/
  coco_karpathy.py`` writes it from the Karpathy file):
  ``ann_file='annotations/coco_karpathy_{train,val}.json'``,
  ``data_prefix=dict(img_path='images')``; the ground truth of
  ``CaptionMetric`` is ``annotations/captions_val.json``.
- ``COCOVQA``: ``data_prefix='images/{train,val}'``,
  ``question_file='annotations/vqa_{train,val}_questions.json'``,
  ``ann_file='annotations/vqa_{train,val}_annotations.json'``; the answer
  list for the model is ``annotations/vqa_answer_list.txt``.
- ``NLVR2``: ``ann_file='nlvr2/{train,dev}.json'``,
  ``data_prefix='nlvr2/{train,dev}'``.
- The tokenizer (``BEiT3Tokenizer``), trained on all these texts:
  ``beit3_demo.spm``.

A scene holds one or two shapes (:data:`SHAPES` in :data:`COLOURS`); two
shapes sit one in each half, so "left" and "right" are well defined
(horizontal flips change the answers). The val scenes are all different,
so every val caption has exactly one matching image.
"""
import json
import os
import os.path as osp
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .shapes import SHAPES, shape_polygon, train_demo_tokenizer
from ..datasets.coco_karpathy import convert_karpathy
from ..datasets.vqa_answers import build_answer_list, save_answer_list

COLOURS = {
    'red': (220, 50, 50),
    'green': (50, 190, 70),
    'blue': (60, 100, 235),
    'yellow': (235, 215, 50),
}
SIDES = ('left', 'right')
NUM_ANNOTATORS = 10  # answers per VQAv2 question
# Different scenes: one shape on either side, or an ordered pair.
NUM_SCENES = len(SHAPES) * len(COLOURS) * (len(SIDES) +
                                           len(SHAPES) * len(COLOURS))


class Thing(NamedTuple):
    """A shape of a scene."""
    shape: str
    colour: str
    side: str


Scene = Tuple[Thing, ...]  # left to right
QA = Tuple[str, str, str]  # question, answer, answer type


def sample_scene(rng: np.random.Generator) -> Scene:
    """One or two shapes of random colours; two take one half each."""
    sides = SIDES if rng.random() < 0.5 else (SIDES[rng.integers(2)], )
    return tuple(
        Thing(SHAPES[rng.integers(len(SHAPES))],
              list(COLOURS)[rng.integers(len(COLOURS))], side)
        for side in sides)


def draw_scene(scene: Scene, size: int,
               rng: np.random.Generator) -> Image.Image:
    """Draw ``scene`` on a noisy dark background: each shape inside its half,
    of half-size 0.14-0.2 x ``size``, its colour jittered by up to 20."""
    img = Image.fromarray(rng.integers(0, 60, (size, size, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(img)
    for thing in scene:
        r = float(rng.uniform(0.14, 0.2)) * size
        x0 = 0 if thing.side == 'left' else size / 2
        cx = float(rng.uniform(x0 + r + 1, x0 + size / 2 - r - 1))
        cy = float(rng.uniform(r + 1, size - r - 1))
        colour = np.clip(
            np.array(COLOURS[thing.colour]) + rng.integers(-20, 21, 3), 0, 255)
        draw.polygon(
            shape_polygon(thing.shape, cx, cy, r),
            fill=tuple(int(c) for c in colour))
    return img


def _a(thing: Thing) -> str:
    return f'a {thing.colour} {thing.shape}'


def describe(scene: Scene) -> List[str]:
    """Three different captions of ``scene``."""
    if len(scene) == 1:
        (t, ) = scene
        return [
            f'{_a(t)} on the {t.side}',
            f'one {t.colour} {t.shape} in the {t.side} half',
            f'a single {t.shape} in {t.colour} on the {t.side} side'
        ]
    left, right = scene
    return [
        f'{_a(left)} on the left and {_a(right)} on the right',
        f'{_a(right)} to the right of {_a(left)}',
        f'two shapes: {_a(left)} and {_a(right)}'
    ]


def _count(scene: Scene, pred: Callable[[Thing], bool]) -> int:
    return sum(1 for t in scene if pred(t))


def ask(scene: Scene, rng: np.random.Generator) -> List[QA]:
    """Every question the generator can ask about ``scene``, with its
    answer and VQAv2 answer type; exactly one 'yes' and one 'no' among the
    "is there" questions."""
    qas: List[QA] = [('how many shapes are there?', str(len(scene)),
                      'number')]
    for t in scene:
        qas += [
            (f'what color is the shape on the {t.side}?', t.colour, 'other'),
            (f'what shape is on the {t.side}?', t.shape, 'other'),
            (f'where is the {t.colour} {t.shape}?', t.side, 'other'),
        ]
        if _count(scene, lambda u: u.shape == t.shape) == 1:
            qas.append((f'what color is the {t.shape}?', t.colour, 'other'))
    present = scene[rng.integers(len(scene))]
    qas.append((f'is there {_a(present)}?', 'yes', 'yes/no'))
    while True:
        absent = Thing(SHAPES[rng.integers(len(SHAPES))],
                       list(COLOURS)[rng.integers(len(COLOURS))], '')
        if not _count(scene, lambda u: u[:2] == absent[:2]):
            break
    qas.append((f'is there {_a(absent)}?', 'no', 'yes/no'))
    colour = list(COLOURS)[rng.integers(len(COLOURS))]
    qas.append((f'how many {colour} shapes are there?',
                str(_count(scene, lambda u: u.colour == colour)), 'number'))
    return qas


# Wrong answers that an annotator may give instead, by question kind.
_CONFUSIONS = {
    'colour': list(COLOURS),
    'shape': list(SHAPES),
    'side': list(SIDES),
    'yes/no': ['yes', 'no'],
    'number': ['0', '1', '2'],
}


def _kind(answer: str, answer_type: str) -> str:
    if answer_type != 'other':
        return answer_type
    for kind in ('colour', 'shape', 'side'):
        if answer in _CONFUSIONS[kind]:
            return kind
    raise ValueError(f'no answer kind for {answer!r}')


def annotate(answer: str, answer_type: str,
             rng: np.random.Generator) -> List[str]:
    """``NUM_ANNOTATORS`` answers: the true one, except that with
    probability 0.25 one to three annotators give another answer of the
    same kind (so the soft scores are not all 1)."""
    answers = [answer] * NUM_ANNOTATORS
    if rng.random() < 0.25:
        others = [a for a in _CONFUSIONS[_kind(answer, answer_type)]
                  if a != answer]
        for i in rng.choice(NUM_ANNOTATORS, rng.integers(1, 4),
                            replace=False):
            answers[i] = others[rng.integers(len(others))]
    return answers


# NLVR2 statements. The left image is img0, the right one img1.
def _has(scene: Scene, shape: Optional[str] = None,
         colour: Optional[str] = None) -> bool:
    return any((shape is None or t.shape == shape) and (
        colour is None or t.colour == colour) for t in scene)


Judge = Callable[[Scene, Scene], bool]  # (left, right) -> truth


def _statements(rng: np.random.Generator) -> List[Tuple[str, Judge]]:
    """One statement of each kind, with fresh random words.

    A model trained from scratch needs image features that predict the
    label on their own before it can learn how the words select them:
    here an image with more shapes makes every statement more likely true.
    (Kinds whose truth flips with a word, like "has one shape" next to
    "has two shapes" or "more" next to "fewer", leave the image features
    no signal of their own, and the tiny demo model stays at chance.)
    """
    colour = list(COLOURS)[rng.integers(len(COLOURS))]
    k = int(rng.integers(2))  # 0: left, 1: right
    side = SIDES[k]
    return [
        (f'the {side} image has two shapes',
         lambda *pair: len(pair[k]) == 2),
        ('both images have two shapes',
         lambda left, right: len(left) == len(right) == 2),
        (f'the {side} image contains a {colour} shape',
         lambda *pair: _has(pair[k], colour=colour)),
    ]


def state(rng: np.random.Generator) -> Tuple[str, Judge]:
    """A random statement about an image pair and its truth function.

    The statement is drawn before the pair, and pairs are then drawn until
    it has the wanted truth: every statement is as often true as false, so
    the text alone tells nothing about the label."""
    statements = _statements(rng)
    return statements[rng.integers(len(statements))]


def _dump(obj, root: str, rel: str) -> str:
    path = osp.join(root, rel)
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(obj, f)
    return rel


def _unique_scenes(num: int, rng: np.random.Generator) -> List[Scene]:
    scenes, seen = [], set()
    while len(scenes) < num:
        scene = sample_scene(rng)
        if scene not in seen:
            seen.add(scene)
            scenes.append(scene)
    return scenes


def make_vl_demo(root: str,
                 num_train: int = 640,
                 num_val: int = 64,
                 num_train_pairs: int = 1600,
                 num_val_pairs: int = 128,
                 questions_per_image: int = 4,
                 img_size: int = 64,
                 vocab_size: int = 120,
                 seed: int = 0) -> Dict[str, str]:
    """Write the vision-language demo set under ``root``::

        beit3_demo.spm                       tokenizer for all the texts
        images/{train,val}/<12-digit id>.png scenes (retrieval and VQA)
        annotations/captions_{train,val}.json       COCO captions, 3 per image
        annotations/flickr30k_karpathy.json         the same, Karpathy layout
        annotations/coco_karpathy_{train,val}.json  the same, LAVIS layout
        annotations/vqa_{train,val}_questions.json  VQAv2 questions
        annotations/vqa_{train,val}_annotations.json  10 answers each
        annotations/vqa_answer_list.txt      official answer2label format
        nlvr2/{train,dev}.json               NLVR2 JSON lines
        nlvr2/{train,dev}/<split>-<i>-0-img{0,1}.png  image pairs

    Args:
        root: output folder.
        num_train / num_val: retrieval and VQA images per split. The
            ``num_val`` scenes are all different (at most ``NUM_SCENES``);
            train scenes are drawn freely.
        num_train_pairs / num_val_pairs: NLVR2 examples per split, half of
            them true.
        questions_per_image: VQA questions per image (at most 8).
        img_size: side of the square images, at least 20.
        vocab_size: sentencepiece pieces of the tokenizer.
        seed: the random seed.

    Returns:
        Paths relative to ``root``: ``tokenizer``, ``images``,
        ``captions_{train,val}``, ``flickr30k``, ``lavis_{train,val}``,
        ``vqa_{train,val}_questions``, ``vqa_{train,val}_annotations``,
        ``vqa_answer_list`` and ``nlvr2_{train,dev}``.
    """
    if num_val > NUM_SCENES:
        raise ValueError(f'num_val={num_val}, but only {NUM_SCENES} '
                         f'different scenes exist')
    if not 1 <= questions_per_image <= 8:
        raise ValueError(f'questions_per_image={questions_per_image} is not '
                         f'in [1, 8]')
    # a half (size / 2) holds a shape of half-size up to 0.2 x size, 1 px
    # from its edges (draw_scene)
    if img_size < 20:
        raise ValueError(f'img_size={img_size} is too small for a shape in '
                         f'each half: give at least 20')
    files = dict(images='images', tokenizer='beit3_demo.spm')
    texts: List[str] = []  # for the tokenizer
    scene_rng, img_rng, text_rng = (np.random.default_rng([seed, k])
                                    for k in range(3))

    # Retrieval and VQA share the scenes; image ids are global. The val
    # scenes are all different; train scenes may repeat (drawn anew).
    val_scenes = _unique_scenes(num_val, scene_rng)
    splits = dict(
        train=[(1 + i, sample_scene(scene_rng)) for i in range(num_train)],
        val=[(1 + num_train + i, scene) for i, scene in enumerate(val_scenes)])
    karpathy, num_captions = [], 0
    for split, items in splits.items():
        os.makedirs(osp.join(root, 'images', split), exist_ok=True)
        images, captions, questions, annotations = [], [], [], []
        for image_id, scene in items:
            file_name = f'{image_id:012d}.png'
            draw_scene(scene, img_size, img_rng).save(
                osp.join(root, 'images', split, file_name))
            images.append(
                dict(
                    id=image_id,
                    file_name=file_name,
                    coco_url=f'http://demo/{split}/{file_name}',
                    height=img_size,
                    width=img_size))
            sentences = []
            for caption in describe(scene):
                sentences.append(
                    dict(raw=caption, imgid=image_id, sentid=num_captions))
                captions.append(
                    dict(id=num_captions, image_id=image_id, caption=caption))
                texts.append(caption)
                num_captions += 1
            karpathy.append(
                dict(
                    imgid=image_id,
                    filename=f'{split}/{file_name}',
                    split=split,
                    sentids=[s['sentid'] for s in sentences],
                    sentences=sentences))
            qas = ask(scene, text_rng)
            for j, k in enumerate(
                    text_rng.choice(
                        len(qas), questions_per_image, replace=False)):
                question, answer, answer_type = qas[k]
                question_id = image_id * 1000 + j
                questions.append(
                    dict(
                        image_id=image_id,
                        question=question,
                        question_id=question_id))
                answers = annotate(answer, answer_type, text_rng)
                annotations.append(
                    dict(
                        question_type=' '.join(question.split()[:2]),
                        multiple_choice_answer=max(
                            set(answers), key=answers.count),
                        answers=[
                            dict(
                                answer=a,
                                answer_confidence='yes',
                                answer_id=j + 1)
                            for j, a in enumerate(answers)
                        ],
                        image_id=image_id,
                        answer_type=answer_type,
                        question_id=question_id))
                texts.append(question)
        files[f'captions_{split}'] = _dump(
            dict(images=images, annotations=captions), root,
            f'annotations/captions_{split}.json')
        files[f'vqa_{split}_questions'] = _dump(
            dict(task_type='Open-Ended', data_subtype=split,
                 questions=questions), root,
            f'annotations/vqa_{split}_questions.json')
        files[f'vqa_{split}_annotations'] = _dump(
            dict(data_subtype=split, annotations=annotations), root,
            f'annotations/vqa_{split}_annotations.json')
    # Flickr30k's test split is the val split again.
    karpathy += [
        dict(item, split='test', imgid=item['imgid'] + 100000)
        for item in karpathy if item['split'] == 'val'
    ]
    files['flickr30k'] = _dump(
        dict(images=karpathy), root, 'annotations/flickr30k_karpathy.json')
    # mmpretrain's COCOCaption reads the LAVIS files (one item per caption
    # in train, per image in val), made by the Karpathy converter
    lavis = convert_karpathy(dict(images=karpathy))
    for split in ('train', 'val'):
        files[f'lavis_{split}'] = _dump(
            lavis[f'coco_karpathy_{split}'], root,
            f'annotations/coco_karpathy_{split}.json')
    files['vqa_answer_list'] = osp.join('annotations', 'vqa_answer_list.txt')
    # the official procedure, keeping every answer of the small set
    vqa_annotations = [
        osp.join(root, files[f'vqa_{split}_annotations'])
        for split in ('train', 'val')
    ]
    answers = build_answer_list(vqa_annotations, min_count=1)
    save_answer_list(answers, osp.join(root, files['vqa_answer_list']))

    # NLVR2: two fresh scenes per example, half of them true; the statement
    # is drawn first (see state()).
    for split, num in (('train', num_train_pairs), ('dev', num_val_pairs)):
        folder = osp.join('nlvr2', split)
        os.makedirs(osp.join(root, folder), exist_ok=True)
        lines = []
        for i in range(num):
            truth = i % 2 == 0
            sentence, judge = state(text_rng)
            while True:
                pair = (sample_scene(scene_rng), sample_scene(scene_rng))
                if judge(*pair) == truth:
                    break
            identifier = f'{split}-{i}-0-0'
            for k, scene in enumerate(pair):
                draw_scene(scene, img_size, img_rng).save(
                    osp.join(root, folder, f'{split}-{i}-0-img{k}.png'))
            lines.append(
                json.dumps(
                    dict(
                        identifier=identifier,
                        sentence=sentence,
                        label=str(truth))))
            texts.append(sentence)
        files[f'nlvr2_{split}'] = f'{folder}.json'
        with open(osp.join(root, files[f'nlvr2_{split}']), 'w') as f:
            f.write('\n'.join(lines) + '\n')

    train_demo_tokenizer(texts, osp.join(root, files['tokenizer']),
                         vocab_size)
    return files
