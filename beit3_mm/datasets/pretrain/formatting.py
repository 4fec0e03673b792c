"""Packing, collating and splitting the mixed pretraining batches (the
contract is in :mod:`beit3_mm.datasets.pretrain`)."""
from typing import Dict, List, NamedTuple, Optional, Sequence

import torch
from mmpretrain.datasets.transforms import PackInputs
from mmpretrain.structures import DataSample

from beit3_mm.registry import FUNCTIONS, TRANSFORMS

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


@FUNCTIONS.register_module()
def pretrain_collate(data_batch: Sequence[dict]) -> dict:
    """Collate packed samples of all sources:
    ``inputs``: the images of the samples that have one, in batch order,
    stacked (``(N_img, C, H, W)`` uint8), or None; ``data_samples``: all
    samples, in batch order."""
    images = [d['inputs'] for d in data_batch if d['inputs'] is not None]
    shapes = {tuple(img.shape) for img in images}
    if len(shapes) > 1:
        raise ValueError(
            f'the images of a pretraining batch differ in size {shapes}: '
            f'end the image and pair pipelines with crops to one size')
    return dict(
        inputs=torch.stack(images) if images else None,
        data_samples=[d['data_samples'] for d in data_batch])


class SourceBatch(NamedTuple):
    """The samples of one source in a batch, in batch order."""
    images: Optional[torch.Tensor]  # (B_s, C, H, W); None for 'text'
    text_ids: Optional[torch.Tensor]  # (B_s, L) for 'text', else None
    texts: Optional[List[str]]  # captions for 'pair', else None
    data_samples: List[DataSample]


def split_by_source(images: Optional[torch.Tensor],
                    data_samples: Sequence[DataSample]
                    ) -> Dict[str, SourceBatch]:
    """Split a batch (``images`` as :func:`pretrain_collate` stacks them,
    after the data preprocessor) by source; only the sources present are
    keys."""
    rows: Dict[str, List[int]] = {s: [] for s in SOURCES}
    samples: Dict[str, List[DataSample]] = {s: [] for s in SOURCES}
    num_images = 0
    for sample in data_samples:
        if sample.source != 'text':
            rows[sample.source].append(num_images)
            num_images += 1
        samples[sample.source].append(sample)
    if num_images != (0 if images is None else len(images)):
        raise ValueError(f'{num_images} image and pair samples for '
                         f'{0 if images is None else len(images)} images: '
                         f'collate with pretrain_collate')
    out = {}
    for source in SOURCES:
        group = samples[source]
        if not group:
            continue
        out[source] = SourceBatch(
            images=None if source == 'text' else images[rows[source]],
            text_ids=torch.stack([s.text_ids for s in group])
            if source == 'text' else None,
            texts=[s.text for s in group] if source == 'pair' else None,
            data_samples=group)
    return out
