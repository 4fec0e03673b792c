"""Packing the samples of the pretraining sources (the contract is in
:mod:`beit3_mm.datasets.pretrain`)."""
from typing import Optional, Sequence

import torch
from mmpretrain.datasets.transforms import PackInputs

from beit3_mm.registry import TRANSFORMS

SOURCES = ('image', 'text', 'pair')


@TRANSFORMS.register_module()
class PackPretrainInputs(PackInputs):
    """:class:`PackInputs` for one pretraining source: ``inputs`` is the
    image (``'image'``, ``'pair'``; None for ``'text'``), the data sample
    gets ``source`` (metainfo), ``text`` (``'pair'``) or ``text_ids``
    (``'text'``, int64 ``(max_text_len, )``).

    Args:
        source (str, optional): the source of every sample of this
            pipeline; by default the ``source`` the dataset sets (the text
            and pair datasets do, image datasets such as ``ImageNet`` do
            not).
        meta_keys (Sequence[str]): as :class:`PackInputs`.
    """

    def __init__(self,
                 source: Optional[str] = None,
                 meta_keys: Sequence[str] = PackInputs.DEFAULT_META_KEYS):
        if source is not None and source not in SOURCES:
            raise ValueError(f'source={source!r} is unknown: use one of '
                             f'{SOURCES}')
        super().__init__(
            algorithm_keys=('text', 'text_ids'),
            meta_keys=tuple(meta_keys) + ('source', ))
        self.source = source

    def transform(self, results: dict) -> dict:
        source = self.source or results.get('source')
        if source not in SOURCES:
            raise ValueError(
                f'a pretraining sample has source={source!r}: set '
                f"PackPretrainInputs(source='image'|'text'|'pair') in the "
                f"pipeline of {results.get('img_path', 'this dataset')}")
        has_img = 'img' in results
        if has_img != (source != 'text'):
            raise ValueError(
                f"a {source!r} sample {'has' if has_img else 'lacks'} an "
                f'image: image and pair pipelines load one, text pipelines '
                f'none')
        if source == 'text' and 'text_ids' not in results:
            raise ValueError('a text sample has no text_ids: use '
                             'PretrainTextCorpus for the text source')
        if source == 'pair' and not isinstance(results.get('text'), str):
            raise ValueError(f"the pair {results.get('img_path')} has no text "
                             f'caption: use ImageTextPairs / ImageTextShards')
        results['source'] = source
        if source == 'text':
            results['text_ids'] = torch.as_tensor(results['text_ids'],
                                                  dtype=torch.long)
        packed = super().transform(results)
        if source == 'text':
            packed['inputs'] = None  # every sample has the key
        return packed
