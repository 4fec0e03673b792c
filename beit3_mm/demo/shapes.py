"""Small, deterministic demo datasets generated on the fly.

The README's demo runs and the tests use them: nothing is downloaded.
"""
import json
import math
import os
import os.path as osp
from typing import List, Tuple

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ('circle', 'square', 'triangle', 'cross')
# The detection demo leaves the cross out: three classes that a tiny
# detector tells apart within a few CPU minutes.
DETECTION_SHAPES = ('circle', 'square', 'triangle')
# The segmentation demo: the background is a class of its own.
SEGMENTATION_CLASSES = ('background', ) + DETECTION_SHAPES


def draw_shape(shape: str, size: int, rng: np.random.Generator) -> Image.Image:
    """An image of one ``shape`` in a random colour, place and size on a
    noisy background."""
    background = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    img = Image.fromarray(background)
    draw = ImageDraw.Draw(img)
    colour = tuple(int(c) for c in rng.integers(120, 256, 3))
    r = rng.uniform(0.22, 0.4) * size
    cx, cy = rng.uniform(r, size - r, 2)
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == 'circle':
        draw.ellipse(box, fill=colour)
    elif shape == 'square':
        draw.rectangle(box, fill=colour)
    elif shape == 'triangle':
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)],
                     fill=colour)
    elif shape == 'cross':
        w = r / 3
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=colour)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=colour)
    else:
        raise ValueError(f'unknown shape {shape!r}; one of {SHAPES}')
    return img


def make_classification_demo(root: str,
                             num_train: int = 128,
                             num_val: int = 32,
                             img_size: int = 32,
                             seed: int = 0) -> Tuple[str, ...]:
    """Write ``root/{train,val}/<shape>/<i>.png`` (mmpretrain's
    ``CustomDataset`` folder layout), ``num_train`` / ``num_val`` images per
    class, deterministic for a given ``seed``.

    Returns:
        The class names (the shapes), in folder order.
    """
    rng = np.random.default_rng(seed)
    for split, num in (('train', num_train), ('val', num_val)):
        for shape in SHAPES:
            folder = osp.join(root, split, shape)
            os.makedirs(folder, exist_ok=True)
            for i in range(num):
                draw_shape(shape, img_size, rng).save(
                    osp.join(folder, f'{i:04d}.png'))
    return SHAPES


def shape_polygon(shape: str, cx: float, cy: float,
                  r: float) -> List[Tuple[float, float]]:
    """The outline of ``shape`` centred at ``(cx, cy)`` with half-size
    ``r``, as a list of ``(x, y)`` vertices; a circle is a 32-gon."""
    if shape == 'circle':
        return [(cx + r * math.cos(2 * math.pi * k / 32),
                 cy + r * math.sin(2 * math.pi * k / 32)) for k in range(32)]
    if shape == 'square':
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r),
                (cx - r, cy + r)]
    if shape == 'triangle':
        return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == 'cross':
        w = r / 3
        return [(cx - w, cy - r), (cx + w, cy - r), (cx + w, cy - w),
                (cx + r, cy - w), (cx + r, cy + w), (cx + w, cy + w),
                (cx + w, cy + r), (cx - w, cy + r), (cx - w, cy + w),
                (cx - r, cy + w), (cx - r, cy - w), (cx - w, cy - w)]
    raise ValueError(f'unknown shape {shape!r}; one of {SHAPES}')


def draw_shapes(size: int,
                rng: np.random.Generator,
                max_shapes: int = 3,
                max_tint: int = 160,
                noise: int = 8) -> Image.Image:
    """An image of 1 to ``max_shapes`` shapes (any of :data:`SHAPES`, each
    of a random colour, place and half-size 0.12-0.3 x ``size``; later ones
    may cover earlier ones) on a background of a random tint (each
    channel's base in ``[0, max_tint)``, +-``noise`` per pixel).

    Unlike :func:`draw_shape`'s dark noise, the background differs from
    image to image and the shapes sit anywhere, so what a patch holds is
    told by the other patches of its image more than by its place.
    """
    tint = rng.integers(0, max_tint, 3)
    pixels = tint + rng.integers(-noise, noise + 1, (size, size, 3))
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        r = float(rng.uniform(0.12, 0.3)) * size
        cx, cy = (float(c) for c in rng.uniform(r, size - r, 2))
        colour = tuple(int(c) for c in rng.integers(120, 256, 3))
        draw.polygon(shape_polygon(shape, cx, cy, r), fill=colour)
    return img


def _polygon_area(points: List[Tuple[float, float]]) -> float:
    """The shoelace area of a simple polygon."""
    xs, ys = zip(*points)
    return abs(
        sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i]
            for i in range(len(points)))) / 2


def make_detection_demo(root: str,
                        num_train: int = 64,
                        num_val: int = 16,
                        img_size: int = 128,
                        seed: int = 0) -> Tuple[str, ...]:
    """Write a COCO-format instance segmentation set of shapes::

        root/train/000000.png ...
        root/val/000000.png ...
        root/annotations/instances_train.json
        root/annotations/instances_val.json

    Each image holds 1-3 non-overlapping shapes (``DETECTION_SHAPES``) of a
    random colour and half-size (12-30 px at 128 px) on a noisy dark
    background. A shape is drawn from the very polygon that is its
    ``segmentation``, so boxes and masks agree with the pixels. The
    ``file_name`` of an image is relative to its split folder; category ids
    are 1-based and the shapes take turns, so the classes are balanced.
    Deterministic for a given ``seed``.

    Returns:
        The class names, in category id order.
    """
    rng = np.random.default_rng(seed)
    categories = [
        dict(id=i + 1, name=name) for i, name in enumerate(DETECTION_SHAPES)
    ]
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    for split, num in (('train', num_train), ('val', num_val)):
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, annotations = [], []
        for i in range(num):
            file_name = f'{i:06d}.png'
            images.append(
                dict(
                    id=i + 1,
                    file_name=file_name,
                    height=img_size,
                    width=img_size))
            background = rng.integers(0, 60, (img_size, img_size, 3),
                                      dtype=np.uint8)
            img = Image.fromarray(background)
            draw = ImageDraw.Draw(img)
            boxes: List[Tuple[float, float, float, float]] = []
            for _ in range(int(rng.integers(1, 4))):
                # Rejection sampling of a place that leaves a 2 px gap to the
                # shapes already drawn; give up on this shape if none fits.
                for _ in range(50):
                    r = float(rng.uniform(12, 30)) * img_size / 128
                    cx, cy = (float(c) for c in rng.uniform(
                        r + 1, img_size - r - 1, 2))
                    box = (cx - r - 2, cy - r - 2, cx + r + 2, cy + r + 2)
                    if all(box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1]
                           or b[3] <= box[1] for b in boxes):
                        break
                else:
                    continue
                boxes.append(box)
                # Classes in turn: a balanced set whatever the seed.
                label = len(annotations) % len(DETECTION_SHAPES)
                colour = tuple(int(c) for c in rng.integers(120, 256, 3))
                points = [(round(x, 2), round(y, 2)) for x, y in shape_polygon(
                    DETECTION_SHAPES[label], cx, cy, r)]
                # PIL also fills the pixels on the edges: drawn half a pixel
                # smaller, the shape covers the pixels of the COCO mask.
                k = 1 - 0.5 / r
                draw.polygon([(cx + k * (x - cx), cy + k * (y - cy))
                              for x, y in points],
                             fill=colour)
                xs, ys = zip(*points)
                x0, y0 = min(xs), min(ys)
                annotations.append(
                    dict(
                        id=len(annotations) + 1,
                        image_id=i + 1,
                        category_id=label + 1,
                        bbox=[
                            x0, y0,
                            round(max(xs) - x0, 2),
                            round(max(ys) - y0, 2)
                        ],
                        area=round(_polygon_area(points), 2),
                        iscrowd=0,
                        segmentation=[[c for p in points for c in p]]))
            img.save(osp.join(root, split, file_name))
        with open(
                osp.join(root, 'annotations', f'instances_{split}.json'),
                'w') as f:
            json.dump(
                dict(
                    images=images,
                    annotations=annotations,
                    categories=categories),
                f)
    return DETECTION_SHAPES


def make_segmentation_demo(root: str,
                           num_train: int = 64,
                           num_val: int = 16,
                           img_size: int = 64,
                           seed: int = 0,
                           max_shapes: int = 3) -> Tuple[str, ...]:
    """Write a semantic segmentation set of shapes in the ADE20K layout::

        root/images/training/000000.jpg ...
        root/images/validation/000000.jpg ...
        root/annotations/training/000000.png ...
        root/annotations/validation/000000.png ...

    Each image holds 1 to ``max_shapes`` shapes (``DETECTION_SHAPES``,
    taking turns so the classes are balanced; later ones may cover earlier
    ones) of a random colour and half-size (12-30% of the side) on a noisy dark background.
    The label maps follow ADE20K: 0 is unlabelled (ignored with
    ``reduce_zero_label=True``), class ``k`` of ``SEGMENTATION_CLASSES`` is
    stored as ``k + 1``. The background is a class; the one-pixel outline
    of each shape is left unlabelled. A shape's pixels and its labels come
    from the same polygon. Deterministic for a given ``seed``.

    Returns:
        The class names, in label order (after ``reduce_zero_label``).
    """
    rng = np.random.default_rng(seed)
    num_shapes = 0
    for split, num in (('training', num_train), ('validation', num_val)):
        img_dir = osp.join(root, 'images', split)
        ann_dir = osp.join(root, 'annotations', split)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for i in range(num):
            img = Image.fromarray(
                rng.integers(0, 60, (img_size, img_size, 3), dtype=np.uint8))
            labels = Image.new('L', (img_size, img_size),
                               SEGMENTATION_CLASSES.index('background') + 1)
            draw_img, draw_ann = ImageDraw.Draw(img), ImageDraw.Draw(labels)
            for _ in range(int(rng.integers(1, max_shapes + 1))):
                shape = DETECTION_SHAPES[num_shapes % len(DETECTION_SHAPES)]
                num_shapes += 1
                r = float(rng.uniform(0.12, 0.3)) * img_size
                cx, cy = (float(c) for c in rng.uniform(r, img_size - r, 2))
                points = shape_polygon(shape, cx, cy, r)
                colour = tuple(int(c) for c in rng.integers(120, 256, 3))
                draw_img.polygon(points, fill=colour)
                draw_ann.polygon(
                    points,
                    fill=SEGMENTATION_CLASSES.index(shape) + 1,
                    outline=0)
            img.save(osp.join(img_dir, f'{i:06d}.jpg'), quality=95)
            labels.save(osp.join(ann_dir, f'{i:06d}.png'))
    return SEGMENTATION_CLASSES


def train_demo_tokenizer(sentences: List[str], path: str,
                         vocab_size: int = 200) -> str:
    """Train a small sentencepiece model (a stand-in for ``beit3.spm``) on
    ``sentences`` and write it to ``path``; deterministic for given input.
    """
    import sentencepiece as spm
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'wb') as f:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=f,
            vocab_size=vocab_size,
            hard_vocab_limit=False,
            character_coverage=1.0,
            model_type='unigram',
            num_threads=1,
            minloglevel=2)
    return path
