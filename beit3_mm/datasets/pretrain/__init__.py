"""BEiT-3 pretraining data: images, texts and image-text pairs mixed in
fixed proportions in every batch.

Importing :mod:`beit3_mm.datasets` (which ``import beit3_mm`` does)
registers, in mmengine's root registries: the datasets
``PretrainTextCorpus``, ``ImageTextPairs``, ``ImageTextShards``; the
transform ``PackPretrainInputs``; the sampler ``MixedSourceSampler``; the
collate function ``pretrain_collate``; the hook ``MixedSourceResumeHook``.

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
(consecutive, in the ``ConcatDataset`` order). mmengine's ``pseudo_collate``
leaves ``inputs`` a list with None for the text samples, which
mmpretrain's ``MultiModalDataPreprocessor`` cannot take (``BEiT3Pretrain``'s
``BEiT3PretrainDataPreprocessor`` can: it stacks the images itself); with
``collate_fn=dict(type='pretrain_collate')`` the batch is::

    dict(inputs=Tensor(N_img, 3, H, W) uint8 | None,
         data_samples=[DataSample] * B)

``inputs`` stacks the images of the ``'image'`` and ``'pair'`` samples in
batch order (``N_img`` = their number; all image and pair pipelines crop to
one size). mmpretrain's ``MultiModalDataPreprocessor`` (and its subclass
``BEiT3PretrainDataPreprocessor``; ``mean = std = (127.5,) * 3``,
``to_rgb=True``: the student's view and the tokenizer's [-1, 1] view are
then the same tensor) takes it as it is and calls::

    model.loss(images: Tensor(N_img, 3, H, W) float | None,
               data_samples: List[DataSample])  # B, in batch order

(``forward(images, data_samples, mode='loss')``). The model regroups with
:func:`split_by_source`, which gives, per source present,
``SourceBatch(images, text_ids, texts, data_samples)``: ``images``
``(B_image, 3, H, W)`` / ``(B_pair, 3, H, W)``, ``text_ids`` ``(B_text,
max_text_len)``, ``texts`` (B_pair captions).

A training config with the paper's equal parts (6144 = 3 x 2048 samples a
step in all, split over the GPUs)::

    train_dataloader = dict(
        batch_size=6144 // num_gpus,
        num_workers=10,
        persistent_workers=True,
        sampler=dict(type='MixedSourceSampler', batch_size=6144 // num_gpus,
                     source_ratio=[1, 1, 1]),
        collate_fn=dict(type='pretrain_collate'),
        dataset=dict(
            type='ConcatDataset',
            ignore_keys=['classes'],  # ImageNet's metainfo
            datasets=[
                dict(type='ImageNet', ..., pipeline=[
                    dict(type='LoadImageFromFile'),
                    dict(type='RandomResizedCrop', scale=224, ...),
                    dict(type='PackPretrainInputs', source='image')]),
                dict(type='PretrainTextCorpus', data_files=[...],
                     tokenizer=dict(type='BEiT3Tokenizer',
                                    name_or_path='data/beit3.spm'),
                     max_text_len=64,
                     pipeline=[dict(type='PackPretrainInputs')]),
                dict(type='ImageTextShards', shards='pairs/*.tar',
                     pipeline=[  # the image is decoded by the dataset
                         dict(type='RandomResizedCrop', scale=224, ...),
                         dict(type='PackPretrainInputs')]),
            ]))
    train_cfg = dict(type='IterBasedTrainLoop', max_iters=1000000)
    custom_hooks = [dict(type='MixedSourceResumeHook')]
    randomness = dict(seed=0)

Every rank sees different samples (each source's epoch permutation is
split by rank); the order is a function of ``seed`` and the world size,
and ``MixedSourceResumeHook`` restarts it at the resumed iteration.
"""
from .formatting import (SOURCES, PackPretrainInputs, SourceBatch,
                         pretrain_collate, split_by_source)
from .image_text import (ImageTextPairs, ImageTextShards, index_shard,
                         load_pairs, write_shards)
from .mixing import MixedSourceResumeHook, MixedSourceSampler, split_batch
from .text_corpus import PretrainTextCorpus

__all__ = [
    'SOURCES', 'PackPretrainInputs', 'SourceBatch', 'pretrain_collate',
    'split_by_source', 'ImageTextPairs', 'ImageTextShards', 'index_shard',
    'load_pairs', 'write_shards', 'MixedSourceResumeHook',
    'MixedSourceSampler', 'split_batch', 'PretrainTextCorpus'
]
