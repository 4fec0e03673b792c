"""BEiT-3 pretraining data: images, texts and image-text pairs mixed in
fixed proportions in every batch.

Importing :mod:`beit3_mm.datasets` (which ``import beit3_mm`` does)
registers, in mmengine's root registries: the datasets
``PretrainTextCorpus``, ``ImageTextPairs``, ``ImageTextShards``, the
wrapper ``GuardedDataset`` (unreadable samples: stop or skip); the
transform ``PackPretrainInputs``; the sampler ``MixedSourceSampler``
(resumed by :class:`~beit3_mm.engine.hooks.MixedSourceResumeHook`).

The data contract
-----------------

A sample, after its pipeline (which ends with ``PackPretrainInputs``), is
``dict(inputs=..., data_samples=DataSample)``; ``data_sample.source`` (a
metainfo field) is one of:

- ``'image'``: ``inputs`` is the image, uint8 ``(3, H, W)``, BGR as loaded
  (any mmpretrain image dataset: ``ImageNet``, ``CustomDataset``, with
  ``PackPretrainInputs(source='image')``).
- ``'text'``: ``inputs`` is None; ``data_sample.text_ids`` is int64
  ``(max_text_len, )``: ``<s>`` (0) tokens ``</s>`` (2), then ``<pad>``
  (1) (``PretrainTextCorpus``: documents packed across chunks, separated
  by ``</s>``; only the corpus's last chunk is padded).
- ``'pair'``: ``inputs`` is the image as for ``'image'``;
  ``data_sample.text`` is the caption (str): the model tokenises it
  (``ImageTextPairs``, ``ImageTextShards``).

A batch is drawn by ``MixedSourceSampler``: ``split_batch(batch_size,
source_ratio)[s]`` samples of source ``s`` in every batch of every rank
(consecutive, in the ``ConcatDataset`` order), collated by mmengine's
default ``pseudo_collate`` (lists, None for the text samples' ``inputs``).
``BEiT3Pretrain``'s data preprocessor
(:class:`~beit3_mm.models.selfsup.BEiT3PretrainDataPreprocessor`) stacks
the images of the ``'image'`` and ``'pair'`` samples in batch order (all
image and pair pipelines crop to one size), normalises them and calls::

    model.loss(images: Tensor(N_img, 3, H, W) float | None,
               data_samples: List[DataSample])  # B, in batch order

and the model groups the batch by source
(:func:`~beit3_mm.models.selfsup.beit3_pretrain.split_by_source`).

The paper's mix (equal parts, 6144 samples a step over the GPUs) is
``configs/_base_/datasets/beit3_pretrain_mixed-224px.py``; its configs run
``MixedSourceResumeHook`` and set ``randomness.seed``.

Every rank sees different samples (each source's epoch permutation is
split by rank); the order is a function of ``seed`` and the world size,
and ``MixedSourceResumeHook`` restarts it at the resumed iteration.
"""
from .formatting import SOURCES, PackPretrainInputs
from .guard import GuardedDataset
from .image_text import (ImageTextPairs, ImageTextShards, index_shard,
                         load_pairs, write_shards)
from .mixing import MixedSourceSampler, split_batch
from .text_corpus import PretrainTextCorpus

__all__ = [
    'SOURCES', 'PackPretrainInputs', 'GuardedDataset', 'ImageTextPairs',
    'ImageTextShards', 'index_shard', 'load_pairs', 'write_shards',
    'MixedSourceSampler', 'split_batch', 'PretrainTextCorpus'
]
