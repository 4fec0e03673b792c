"""Unreadable samples in long runs: stop or skip, a config choice, never
silent."""
import logging
from typing import Union

from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from beit3_mm.registry import DATASETS

ON_ERROR = ('raise', 'skip')


@DATASETS.register_module()
class GuardedDataset(BaseDataset):
    """A dataset whose unreadable samples (a corrupt or missing image, an
    undecodable shard member, a pipeline that fails on a sample) stop the
    run or are skipped, as ``on_error`` says.

    - ``'raise'``: the error is raised again as one line naming the sample
      (index and ``img_path``) and the fix.
    - ``'skip'``: a warning naming the sample, the error and the number of
      samples skipped so far (per data loader process), then the next
      readable sample (``idx + 1``, ...) is returned: deterministic, so
      resumed and multi-process runs draw the same data. All samples
      unreadable stops the run.

    Wrap each source of a ``ConcatDataset`` mixed by ``MixedSourceSampler``
    (e.g. web-scale pairs with ``'skip'``); the length and metainfo are
    those of ``dataset``.

    Args:
        dataset (dict | BaseDataset): the dataset or its config.
        on_error (str): ``'raise'`` or ``'skip'``.
        lazy_init (bool): as :class:`BaseDataset`. Defaults to False.
    """

    def __init__(self,
                 dataset: Union[dict, BaseDataset],
                 on_error: str = 'raise',
                 lazy_init: bool = False):
        if on_error not in ON_ERROR:
            raise ValueError(f'on_error={on_error!r} is unknown: use one of '
                             f'{ON_ERROR}')
        self.dataset = DATASETS.build(dataset) if isinstance(
            dataset, dict) else dataset
        self.on_error = on_error
        self.num_skipped = 0
        self._metainfo = self.dataset.metainfo
        self._fully_initialized = False
        if not lazy_init:
            self.full_init()

    def full_init(self) -> None:
        if self._fully_initialized:
            return
        self.dataset.full_init()
        self._fully_initialized = True

    def __len__(self) -> int:
        return len(self.dataset)

    def get_data_info(self, idx: int) -> dict:
        return self.dataset.get_data_info(idx)

    def _describe(self, idx: int) -> str:
        """``sample <idx> of <dataset> (<img_path>)``, as far as known."""
        name = f'sample {idx} of {type(self.dataset).__name__}'
        try:
            path = self.dataset.get_data_info(idx).get('img_path')
        except Exception:  # the error itself names what it could not read
            path = None
        return f'{name} ({path})' if path else name

    def __getitem__(self, idx: int) -> dict:
        for step in range(len(self)):
            i = (idx + step) % len(self)
            try:
                return self.dataset[i]
            except Exception as err:  # readers and pipelines raise any kind
                error = f'{type(err).__name__}: {err}'.replace('\n', ' ')
                if self.on_error == 'raise':
                    raise RuntimeError(
                        f'unreadable {self._describe(i)}: {error}; fix or '
                        f"remove it, or set on_error='skip' to skip such "
                        f'samples (counted in the log)') from err
                self.num_skipped += 1
                print_log(
                    f'skipped unreadable {self._describe(i)}: {error} '
                    f'({self.num_skipped} skipped in this process)',
                    logger='current', level=logging.WARNING)
        raise RuntimeError(f'no sample of {type(self.dataset).__name__} is '
                           f'readable ({len(self)} tried): fix its files')
