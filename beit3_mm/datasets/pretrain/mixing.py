"""Per-step mixing of the pretraining sources, distributed and resumable."""
import itertools
import math
from numbers import Number
from typing import Iterator, List, Optional, Sequence, Sized

import torch
from mmdet.datasets.samplers.multi_source_sampler import MultiSourceSampler

from beit3_mm.registry import DATA_SAMPLERS


def split_batch(batch_size: int, source_ratio: Sequence[float]) -> List[int]:
    """Samples per source in a batch of ``batch_size``: proportional to
    ``source_ratio``, rounded by largest remainder (ties to the first
    source), so they sum to ``batch_size`` exactly."""
    total = sum(source_ratio)
    exact = [batch_size * r / total for r in source_ratio]
    counts = [math.floor(e) for e in exact]
    order = sorted(range(len(exact)), key=lambda i: counts[i] - exact[i])
    for i in order[:batch_size - sum(counts)]:
        counts[i] += 1
    return counts


@DATA_SAMPLERS.register_module()
class MixedSourceSampler(MultiSourceSampler):
    """mmdet's :class:`MultiSourceSampler` (infinite; each batch takes a
    fixed number of samples from each dataset of a ``ConcatDataset``),
    made exact, safe and resumable for pretraining.

    - Per batch, source ``s`` gives ``split_batch(batch_size,
      source_ratio)[s]`` samples, consecutive in the batch, sources in
      dataset order. A ratio of 0 leaves a source out (mmdet's sampler
      would loop forever on it).
    - Each source is an endless run of epochs: the permutations of
      ``torch.Generator().manual_seed(seed)``; rank ``r`` of ``W`` takes
      positions ``r, r + W, ...`` of it, so within an epoch of a source
      the ranks see disjoint samples. With all ratios positive the index
      stream is mmdet's.
    - ``start_iter``: the stream begins at that batch, computed directly
      (no data loaded for the skipped batches); set by
      :class:`~beit3_mm.engine.hooks.MixedSourceResumeHook` when a run
      resumes, which makes ``--resume`` continue with the very next
      batch of the interrupted run (same ``seed``, same world size and
      batch size).

    Args:
        dataset (ConcatDataset): the sources, e.g. images, texts, pairs.
        batch_size (int): samples per batch and rank; must equal the data
            loader's ``batch_size``.
        source_ratio (Sequence[float]): weight of each source (the paper:
            equal parts).
        shuffle (bool): shuffle each source every epoch.
        seed (int, optional): shared by all ranks; the runner passes its
            seed.
        rank / world_size (int, optional): default to the process group's.
    """

    def __init__(self,
                 dataset: Sized,
                 batch_size: int,
                 source_ratio: Sequence[float],
                 shuffle: bool = True,
                 seed: Optional[int] = None,
                 rank: Optional[int] = None,
                 world_size: Optional[int] = None) -> None:
        sizes = [len(d) for d in getattr(dataset, 'datasets', [])]
        if not hasattr(dataset, 'cumulative_sizes'):
            raise TypeError(f'MixedSourceSampler needs a ConcatDataset of the '
                            f'sources, got {type(dataset).__name__}: set '
                            f"dataset=dict(type='ConcatDataset', datasets="
                            f'[...])')
        if (not isinstance(source_ratio, Sequence)
                or len(source_ratio) != len(sizes) or
                not all(isinstance(r, Number) and r >= 0
                        for r in source_ratio) or sum(source_ratio) <= 0):
            raise ValueError(
                f'source_ratio={source_ratio} must give one weight >= 0 per '
                f'dataset ({len(sizes)}) with a positive sum: e.g. '
                f'{[1] * len(sizes)} for equal parts')
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f'batch_size={batch_size} must be a positive '
                             f'integer: set the data loader batch size')
        counts = split_batch(batch_size, source_ratio)
        for s, (ratio, num, size) in enumerate(
                zip(source_ratio, counts, sizes)):
            if ratio > 0 and num == 0:
                raise ValueError(
                    f'batch_size={batch_size} gives source {s} (ratio '
                    f'{ratio}) no sample per batch: raise batch_size or set '
                    f'its ratio to 0')
            if num > 0 and size == 0:
                raise ValueError(
                    f'source {s} ({type(dataset.datasets[s]).__name__}) has '
                    f'zero samples: fix its files or set its ratio to 0')
        super().__init__(dataset, batch_size, list(source_ratio), shuffle,
                         seed)
        self.num_per_source = counts
        if rank is not None or world_size is not None:
            self.rank, self.world_size = rank or 0, world_size or 1
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f'rank={self.rank} is not in [0, world_size='
                             f'{self.world_size})')
        self.start_iter = 0

    def _infinite_indices(self,
                          sample_size: int,
                          start: int = 0) -> Iterator[int]:
        """The endless index run of one source from position ``start``
        (over all ranks), generating only the permutations it needs."""
        g = torch.Generator()
        g.manual_seed(self.seed)
        epoch, offset = divmod(start, sample_size)
        if self.shuffle:
            for _ in range(epoch):
                torch.randperm(sample_size, generator=g)
        while True:
            perm = (torch.randperm(sample_size, generator=g)
                    if self.shuffle else torch.arange(sample_size))
            yield from perm[offset:].tolist()
            offset = 0

    def __iter__(self) -> Iterator[int]:
        streams = {
            s: itertools.islice(
                self._infinite_indices(
                    len(self.dataset.datasets[s]),
                    self.world_size * self.start_iter * num), self.rank, None,
                self.world_size)
            for s, num in enumerate(self.num_per_source) if num
        }
        while True:
            for s, stream in streams.items():
                offset = self.cumulative_sizes[s]
                yield from (offset + i for i in itertools.islice(
                    stream, self.num_per_source[s]))
