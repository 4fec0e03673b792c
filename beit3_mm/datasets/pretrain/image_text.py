"""Image-text pairs for pretraining: COCO / LAVIS-style json, and tar
shards (webdataset layout) with a byte-offset index for millions of pairs.
One sample per (image, caption)."""
import glob
import io
import itertools
import json
import os
import os.path as osp
import tarfile
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import mmcv
import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.fileio import get_file_backend

from beit3_mm.registry import DATASETS

from .utils import PositionalReader, build_once, save_npy_atomic

IMAGE_EXTS = ('jpg', 'jpeg', 'png', 'webp', 'bmp')


def load_pairs(ann_file: str) -> List[Tuple[str, str]]:
    """``(image file, caption)`` pairs, the captions of an image after each
    other, of a COCO captions json
    (``images`` with ``id`` / ``file_name``, ``annotations`` with
    ``image_id`` / ``caption``) or a LAVIS-style list of
    ``{"image": ..., "caption": str | [str, ...]}``."""
    if not osp.isfile(ann_file):
        raise FileNotFoundError(f'image-text annotation file {ann_file!r} not '
                                f'found: fix ann_file (relative to data_root)')
    try:
        with open(ann_file) as f:
            ann = json.load(f)
    except ValueError as err:
        raise ValueError(f'{ann_file} is not valid JSON ({err}): give a COCO '
                         f'captions or LAVIS-style json') from None
    expected = (f'{ann_file} is neither COCO captions json ({{"images": '
                f'[{{"id", "file_name"}}], "annotations": [{{"image_id", '
                f'"caption"}}]}}) nor a LAVIS-style list ([{{"image", '
                f'"caption"}}]): convert it to one of them')
    pairs: List[Tuple[str, str]] = []
    try:
        if isinstance(ann, dict):
            # grouped by image, in image order
            captions: dict = {img['id']: [] for img in ann['images']}
            for a in ann['annotations']:
                captions[a['image_id']].append(a['caption'])
            for img in ann['images']:
                pairs += [(img['file_name'], c) for c in captions[img['id']]]
        elif isinstance(ann, list):
            for a in ann:
                caps = a['caption']
                for cap in [caps] if isinstance(caps, str) else caps:
                    pairs.append((a['image'], cap))
        else:
            raise ValueError(expected)
    except (KeyError, TypeError):
        raise ValueError(expected) from None
    for i, (img, cap) in enumerate(pairs):
        if not isinstance(cap, str) or not cap.strip():
            raise ValueError(f'{ann_file}: caption {i} (of {img!r}) is empty '
                             f'or not a string: remove or fix it')
    if not pairs:
        raise ValueError(f'{ann_file} holds no image-text pairs: point '
                         f'ann_file at a non-empty annotation file')
    return pairs


@DATASETS.register_module()
class ImageTextPairs(BaseDataset):
    """Image-text pairs from a COCO captions or LAVIS-style json (see
    :func:`load_pairs`), one sample per caption.

    Each sample: ``img_path``, ``text`` (the caption), ``source`` =
    ``'pair'``; the pipeline loads the image (``LoadImageFromFile``).

    Args:
        ann_file (str): the json, relative to ``data_root``.
        data_prefix (str | dict): folder of the images
            (``dict(img_path=...)``), relative to ``data_root``.
        **kwargs: passed to :class:`mmengine.dataset.BaseDataset`.
    """

    def __init__(self,
                 ann_file: str,
                 data_prefix: Union[str, dict] = '',
                 **kwargs):
        if isinstance(data_prefix, str):
            data_prefix = dict(img_path=data_prefix)
        super().__init__(ann_file=ann_file, data_prefix=data_prefix, **kwargs)

    def load_data_list(self) -> List[dict]:
        prefix = self.data_prefix['img_path']
        backend = get_file_backend(prefix)
        return [
            dict(img_path=backend.join_path(prefix, img), text=cap.strip(),
                 source='pair')
            for img, cap in load_pairs(self.ann_file)
        ]


def _key_ext(name: str) -> Tuple[str, str]:
    """webdataset naming: the key is the path up to the first dot of the
    base name, the extension the rest (``a/b.0.txt`` -> ``a/b``,
    ``0.txt``)."""
    folder, base = osp.split(name)
    key, _, ext = base.partition('.')
    return osp.join(folder, key), ext.lower()


def index_shard(tar_path: str) -> np.ndarray:
    """Rows ``(image offset, image size, text offset, text size)`` (int64),
    one per caption of ``tar_path``, from its headers only.

    A sample is the members sharing a key: one image (``IMAGE_EXTS``) and
    captions ``txt`` or ``<j>.txt``; keys with no image or no caption are
    skipped.
    """
    samples: dict = {}
    with tarfile.open(tar_path) as tar:
        for m in tar:
            if not m.isfile():
                continue
            key, ext = _key_ext(m.name)
            entry = samples.setdefault(key, dict(img=None, txt=[]))
            if ext in IMAGE_EXTS:
                entry['img'] = (m.offset_data, m.size)
            elif ext == 'txt' or ext.endswith('.txt'):
                entry['txt'].append((m.offset_data, m.size))
    rows = [(*e['img'], *t) for e in samples.values() if e['img']
            for t in e['txt']]
    return np.array(rows, np.int64).reshape(-1, 4)


def write_shards(pairs: Iterable[Tuple[str, str]],
                 out_dir: str,
                 pairs_per_shard: int = 10000,
                 prefix: str = 'pairs') -> List[str]:
    """Write ``(image path, caption)`` pairs as tar shards
    ``<out_dir>/<prefix>-000000.tar`` ... with their indexes
    (``.tar.idx.npy``, see :func:`index_shard`).

    The captions of one image follow each other in ``pairs`` (as
    :func:`load_pairs` gives them) and go with it into one shard: the
    image is stored once (``<key>.<ext>``, its original bytes) with
    captions ``<key>.<j>.txt``. A shard closes after ``pairs_per_shard``
    pairs at an image boundary. Returns the shard paths.
    """
    os.makedirs(out_dir, exist_ok=True)
    shards: List[str] = []
    tar: Optional[tarfile.TarFile] = None
    in_shard, num_images = 0, 0

    def add(name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    for img, group in itertools.groupby(pairs, key=lambda pair: pair[0]):
        caps = [cap for _, cap in group]
        if tar is None or in_shard >= pairs_per_shard:
            if tar is not None:
                tar.close()
            shards.append(
                osp.join(out_dir, f'{prefix}-{len(shards):06d}.tar'))
            tar = tarfile.open(shards[-1], 'w', format=tarfile.USTAR_FORMAT)
            in_shard = 0
        if not osp.isfile(img):
            raise FileNotFoundError(f'image {img!r} of the pairs not found: '
                                    f'fix the image root (--img-root)')
        ext = osp.splitext(img)[1].lstrip('.').lower()
        if ext not in IMAGE_EXTS:
            raise ValueError(f'{img!r}: images must be one of {IMAGE_EXTS}')
        key = f'{num_images:09d}'
        with open(img, 'rb') as f:
            add(f'{key}.{ext}', f.read())
        for j, cap in enumerate(caps):
            add(f'{key}.{j}.txt', cap.strip().encode('utf-8'))
        num_images += 1
        in_shard += len(caps)
    if tar is not None:
        tar.close()
    for shard in shards:
        save_npy_atomic(shard + '.idx.npy', index_shard(shard))
    return shards


@DATASETS.register_module()
class ImageTextShards(BaseDataset):
    """Image-text pairs in tar shards (webdataset layout; written by
    ``tools/dataset_converters/pairs_to_shards.py``), one sample per
    caption, read by byte offset: the dataset holds one small index per
    shard (memory-mapped ``<shard>.idx.npy``, built from the tar headers
    when missing), never the pairs.

    Each sample: ``img`` (decoded here, BGR uint8 like
    ``LoadImageFromFile``, so the pipeline starts *after* image loading),
    ``img_shape``, ``ori_shape``, ``img_path`` (``<shard>/<offset>``, for
    messages), ``text``, ``source`` = ``'pair'``.

    Args:
        shards (str | Sequence[str]): tar files or glob patterns, relative
            to ``data_root``; sorted within a pattern.
        **kwargs: passed to :class:`mmengine.dataset.BaseDataset`.
    """

    def __init__(self, shards: Union[str, Sequence[str]], **kwargs):
        self.shards = [shards] if isinstance(shards, str) else list(shards)
        self._reader = PositionalReader()
        super().__init__(**kwargs)

    def full_init(self) -> None:
        if self._fully_initialized:
            return
        self._paths: List[str] = []
        for pattern in self.shards:
            if self.data_root and not osp.isabs(pattern):
                pattern = osp.join(self.data_root, pattern)
            found = sorted(glob.glob(pattern))
            if not found:
                raise FileNotFoundError(
                    f'no image-text shard matches {pattern!r}: fix shards '
                    f'(tar files or globs relative to data_root)')
            self._paths += found
        self._indexes = []
        for path in self._paths:
            index_file = path + '.idx.npy'
            build_once(
                index_file,
                lambda: osp.getmtime(index_file) >= osp.getmtime(path),
                lambda: save_npy_atomic(index_file, index_shard(path)))
            self._indexes.append(np.load(index_file, mmap_mode='r'))
        self._starts = np.cumsum([0] + [len(ix) for ix in self._indexes])
        if self._starts[-1] == 0:
            raise ValueError(f'the shards {self._paths} hold no image-text '
                             f'pairs: write them with pairs_to_shards.py')
        self._fully_initialized = True

    def __len__(self) -> int:
        if not self._fully_initialized:
            self.full_init()
        return int(self._starts[-1])

    def get_data_info(self, idx: int) -> dict:
        if not 0 <= idx < len(self):
            raise IndexError(f'pair {idx} is out of range [0, {len(self)})')
        s = int(np.searchsorted(self._starts, idx, side='right')) - 1
        img_off, img_size, txt_off, txt_size = (
            int(v) for v in self._indexes[s][idx - self._starts[s]])
        path = self._paths[s]
        img_path = f'{path}/{img_off}'
        try:
            img = mmcv.imfrombytes(
                self._reader.read(path, img_off, img_off + img_size))
        except Exception as err:  # decoders raise many kinds
            raise ValueError(f'image {img_path} (shard/offset) cannot be '
                             f'decoded ({err}): rewrite the shard') from err
        if img is None:
            raise ValueError(f'image {img_path} (shard/offset) cannot be '
                             f'decoded: rewrite the shard')
        text = self._reader.read(path, txt_off,
                                 txt_off + txt_size).decode('utf-8')
        return dict(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2],
                    img_path=img_path, text=text, source='pair',
                    sample_idx=idx)
