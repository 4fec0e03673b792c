"""Small, deterministic demo datasets generated on the fly.

The README's demo runs and the tests use them: nothing is downloaded.
"""
import os
import os.path as osp
from typing import Tuple

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ('circle', 'square', 'triangle', 'cross')


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
