"""The pretraining demo set: shape images, a text corpus of scene
captions and captioned scenes, in the formats the pretraining datasets
read (see :mod:`beit3_mm.datasets.pretrain`)."""
import json
import os
import os.path as osp
from typing import Dict

import numpy as np

from .shapes import draw_shapes, train_demo_tokenizer
from .vl_scenes import describe, draw_scene, sample_scene


def make_pretrain_demo(root: str,
                       num_images: int = 256,
                       num_pairs: int = 256,
                       num_docs: int = 512,
                       img_size: int = 32,
                       pairs_per_shard: int = 256,
                       vocab_size: int = 100,
                       seed: int = 0) -> Dict[str, str]:
    """Write the pretraining demo set under ``root``::

        beit3_demo.spm                 tokenizer for all the texts
        images/<i>.png                 shapes on tinted backgrounds
                                       ('image' source; CustomDataset,
                                       with_label=False; draw_shapes)
        text/corpus.txt                one document per line ('text':
                                       PretrainTextCorpus)
        pairs/images/<i>.png           scenes, 3 captions each ('pair':
        pairs/captions.json            ImageTextPairs, LAVIS-style)
        pairs/shards/pairs-*.tar       the same pairs as shards
                                       (ImageTextShards)

    Text documents describe fresh scenes (two or three of their captions
    per line), so the corpus and the pairs share a vocabulary but not the
    sentences. The captions are those of the VL demo
    (:func:`~beit3_mm.demo.make_vl_demo`), so the tokenizer covers its
    retrieval captions and a checkpoint pretrained here fine-tunes the
    retrieval demo with it. Deterministic for a given ``seed``.

    Returns:
        Paths relative to ``root``: ``tokenizer``, ``images``,
        ``corpus``, ``pair_images``, ``captions``, ``shards`` (a glob).
    """
    from ..datasets.pretrain import load_pairs, write_shards
    rng = np.random.default_rng(seed)
    files = dict(
        tokenizer='beit3_demo.spm',
        images='images',
        corpus='text/corpus.txt',
        pair_images='pairs/images',
        captions='pairs/captions.json',
        shards='pairs/shards/pairs-*.tar')
    for folder in ('images', 'text', 'pairs/images'):
        os.makedirs(osp.join(root, folder), exist_ok=True)
    for i in range(num_images):
        draw_shapes(img_size, rng).save(
            osp.join(root, 'images', f'{i:06d}.png'))

    texts = []
    pairs = []
    for i in range(num_pairs):
        scene = sample_scene(rng)
        name = f'{i:06d}.png'
        draw_scene(scene, img_size, rng).save(
            osp.join(root, files['pair_images'], name))
        pairs.append(dict(image=name, caption=describe(scene)))
        texts += describe(scene)
    with open(osp.join(root, files['captions']), 'w') as f:
        json.dump(pairs, f)

    docs = []
    for _ in range(num_docs):
        captions = describe(sample_scene(rng))
        docs.append('. '.join(captions[:int(rng.integers(2, 4))]) + '.')
    with open(osp.join(root, files['corpus']), 'w') as f:
        f.write('\n'.join(docs) + '\n')
    texts += docs

    write_shards(
        [(osp.join(root, files['pair_images'], img), cap)
         for img, cap in load_pairs(osp.join(root, files['captions']))],
        osp.join(root, 'pairs/shards'), pairs_per_shard)
    train_demo_tokenizer(texts, osp.join(root, files['tokenizer']),
                         vocab_size)
    return files
