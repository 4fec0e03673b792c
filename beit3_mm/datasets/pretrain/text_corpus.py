"""Text corpora for masked language modeling: tokenised once into an index,
read lazily, packed into fixed-length chunks."""
import hashlib
import json
import os
import os.path as osp
from array import array
from typing import List, Optional, Sequence, Union

import numpy as np
from mmengine.dataset import BaseDataset

from beit3_mm.registry import DATASETS, TOKENIZER

from .utils import PositionalReader, build_once, save_npy_atomic

DOC_FORMATS = ('line', 'paragraph', 'jsonl')
INDEX_VERSION = 1


@DATASETS.register_module()
class PretrainTextCorpus(BaseDataset):
    """Plain text or jsonl corpora, tokenised and packed into chunks of
    ``max_text_len`` tokens (the ``source='text'`` part of pretraining).

    Packing: the documents of all ``data_files`` form one token stream,
    each document followed by ``</s>``; chunk ``k`` is ``<s>`` +
    ``stream[k * C:(k + 1) * C]`` + ``</s>`` with ``C = max_text_len - 2``,
    padded with ``<pad>`` (only the last chunk is shorter). Documents
    continue across chunks (fairseq's ``break_mode='none'``, as UniLM and
    RoBERTa pretrain), so no token is lost and no padding is spent on
    short lines; a document that ends exactly at a chunk's end gives
    ``</s> </s>`` there.

    Laziness: on first use each file gets an index, ``<file>.idx.npy``
    (int64, one row per text line: byte start, byte end, tokens so far
    including separators, document end flag) with its fingerprint in
    ``<file>.idx.json`` (file size and time, tokenizer, format); it is
    built by one tokenising pass on local rank 0 (the other ranks wait)
    and rebuilt when the file or the tokenizer changes. A chunk reads only
    its own lines (``os.pread`` of their byte range) and tokenises them
    again; the index is memory-mapped, so the corpus never sits in RAM.

    Formats (``doc_format``):

    - ``'line'``: one document per line; an empty line is an error.
    - ``'paragraph'``: documents separated by blank lines; each line of a
      document is tokenised on its own.
    - ``'jsonl'``: one ``{"<text_key>": "..."}`` object per line.

    Each sample: ``text_ids`` (int64 array of ``max_text_len``), ``source``
    = ``'text'``, ``sample_idx``.

    Args:
        data_files (str | Sequence[str]): corpus files, relative to
            ``data_root`` unless absolute.
        tokenizer (dict | object): a ``BEiT3Tokenizer`` or its config.
        max_text_len (int): length of a chunk with ``<s>`` and ``</s>``.
        doc_format (str, optional): one of ``DOC_FORMATS``; by default
            ``'jsonl'`` for ``*.jsonl`` files, else ``'line'``.
        text_key (str): the text field of jsonl lines.
        index_dir (str, optional): folder for the index files when the
            corpus folder is read-only.
        **kwargs: passed to :class:`mmengine.dataset.BaseDataset`
            (``data_root``, ``pipeline``, ``lazy_init``, ...).
    """

    def __init__(self,
                 data_files: Union[str, Sequence[str]],
                 tokenizer: Union[dict, object],
                 max_text_len: int = 64,
                 doc_format: Optional[str] = None,
                 text_key: str = 'text',
                 index_dir: Optional[str] = None,
                 **kwargs):
        if max_text_len < 3:
            raise ValueError(f'max_text_len={max_text_len} leaves no room for '
                             f'tokens between <s> and </s>: set it to >= 3')
        if doc_format is not None and doc_format not in DOC_FORMATS:
            raise ValueError(f'doc_format={doc_format!r} is unknown: use one '
                             f'of {DOC_FORMATS} (or None to infer it)')
        self.data_files = [data_files] if isinstance(data_files,
                                                     str) else list(data_files)
        if not self.data_files:
            raise ValueError('PretrainTextCorpus got no data_files: list the '
                             'corpus files (.txt or .jsonl)')
        self.tokenizer = TOKENIZER.build(tokenizer) if isinstance(
            tokenizer, dict) else tokenizer
        self.max_text_len = max_text_len
        self.doc_format = doc_format
        self.text_key = text_key
        self.index_dir = index_dir
        self._reader = PositionalReader()
        super().__init__(**kwargs)

    # ---- index -----------------------------------------------------------
    def _format_of(self, path: str) -> str:
        if self.doc_format is not None:
            return self.doc_format
        return 'jsonl' if path.endswith('.jsonl') else 'line'

    def _index_file(self, path: str) -> str:
        if self.index_dir is None:
            return path + '.idx.npy'
        tag = hashlib.md5(osp.abspath(path).encode()).hexdigest()[:8]
        return osp.join(self.index_dir, f'{osp.basename(path)}.{tag}.idx.npy')

    def _fingerprint(self, path: str) -> dict:
        stat = os.stat(path)
        vocab = getattr(self.tokenizer, 'vocab_file', None)
        if vocab and osp.isfile(vocab):
            with open(vocab, 'rb') as f:
                tok = hashlib.md5(f.read()).hexdigest()
        else:
            tok = f'{type(self.tokenizer).__name__}-{len(self.tokenizer)}'
        return dict(version=INDEX_VERSION, size=stat.st_size,
                    mtime_ns=stat.st_mtime_ns,
                    tokenizer=tok, doc_format=self._format_of(path),
                    text_key=self.text_key)

    def _line_text(self, raw: bytes, path: str, line_no: int) -> str:
        """The text of one corpus line (``line_no`` 1-based, for errors)."""
        try:
            text = raw.decode('utf-8')
        except UnicodeDecodeError as err:
            raise ValueError(f'{path}:{line_no} is not UTF-8 ({err}): '
                             f're-encode the corpus as UTF-8') from err
        if self._format_of(path) != 'jsonl':
            return text.strip()
        try:
            text = json.loads(text)[self.text_key]
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(
                f'{path}:{line_no} is not a JSON object with a '
                f'{self.text_key!r} string ({err!r}): write one '
                f'{{"{self.text_key}": "..."}} per line or set text_key'
            ) from None
        if not isinstance(text, str):
            raise ValueError(f'{path}:{line_no}: {self.text_key!r} is not a '
                             f'string: write one {{"{self.text_key}": "..."}} '
                             f'per line')
        return text.strip()

    def _encode(self, text: str) -> List[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _build_index(self, path: str, index_file: str) -> None:
        """One pass over ``path``: offsets and token counts of its lines."""
        fmt = self._format_of(path)
        starts, ends, ntok, doc_end = (array('q') for _ in range(4))
        gap = False
        pos = 0
        with open(path, 'rb') as f:
            for line_no, raw in enumerate(f, 1):
                start, pos = pos, pos + len(raw)
                if not raw.strip():
                    if fmt == 'paragraph':
                        gap = True
                        continue
                    raise ValueError(
                        f'{path}:{line_no} is an empty line in a '
                        f'{fmt!r} corpus: remove it, or set doc_format='
                        f"'paragraph' if blank lines separate documents")
                if fmt == 'paragraph' and gap and len(doc_end):
                    doc_end[-1] = 1
                gap = False
                text = self._line_text(raw, path, line_no)
                if not text:
                    raise ValueError(f'{path}:{line_no} holds an empty text: '
                                     f'remove the line')
                starts.append(start)
                ends.append(pos)
                ntok.append(len(self._encode(text)))
                doc_end.append(0 if fmt == 'paragraph' else 1)
        if len(doc_end):
            doc_end[-1] = 1
        counts = np.frombuffer(ntok, np.int64) + np.frombuffer(
            doc_end, np.int64)
        index = np.stack([
            np.frombuffer(starts, np.int64),
            np.frombuffer(ends, np.int64),
            np.cumsum(counts),
            np.frombuffer(doc_end, np.int64)
        ], axis=1) if len(counts) else np.zeros((0, 4), np.int64)
        save_npy_atomic(index_file, index)
        meta = index_file[:-len('.npy')] + '.json'
        tmp = f'{meta}.{os.getpid()}.tmp'
        with open(tmp, 'w') as f:
            json.dump(self._fingerprint(path), f)
        os.replace(tmp, meta)  # written last: it validates the index

    def _index_is_current(self, path: str, index_file: str) -> bool:
        meta = index_file[:-len('.npy')] + '.json'
        if not osp.isfile(meta):
            return False
        with open(meta) as f:
            return json.load(f) == self._fingerprint(path)

    def full_init(self) -> None:
        """Build or load the index of every file (no ``data_list``)."""
        if self._fully_initialized:
            return
        self._paths = []
        for name in self.data_files:
            path = name if osp.isabs(name) or not self.data_root else \
                osp.join(self.data_root, name)
            if not osp.isfile(path):
                raise FileNotFoundError(
                    f'text corpus file {path!r} not found: fix data_files '
                    f'(relative to data_root={self.data_root!r})')
            self._paths.append(path)
        self._indexes = []
        for path in self._paths:
            index_file = self._index_file(path)
            build_once(index_file,
                       lambda: self._index_is_current(path, index_file),
                       lambda: self._build_index(path, index_file))
            self._indexes.append(np.load(index_file, mmap_mode='r'))
        # the first stream token of each file, and the total
        sizes = [int(ix[-1, 2]) if len(ix) else 0 for ix in self._indexes]
        self._file_starts = np.cumsum([0] + sizes)
        self._num_tokens = int(self._file_starts[-1])
        if self._num_tokens == 0:
            raise ValueError(f'the text corpus {self._paths} holds no text: '
                             f'point data_files at non-empty files')
        self._fully_initialized = True

    # ---- samples ---------------------------------------------------------
    def __len__(self) -> int:
        if not self._fully_initialized:
            self.full_init()
        return -(-self._num_tokens // (self.max_text_len - 2))

    def _file_tokens(self, f: int, t0: int, t1: int) -> List[int]:
        """Stream tokens ``[t0, t1)`` of file ``f`` (file-local positions),
        from the lines that hold them only."""
        index, path = self._indexes[f], self._paths[f]
        cum = index[:, 2]
        first = int(np.searchsorted(cum, t0, side='right'))
        last = int(np.searchsorted(cum, t1 - 1, side='right'))
        base = int(index[first, 0])
        data = self._reader.read(path, base, int(index[last, 1]))
        tokens: List[int] = []
        for i in range(first, last + 1):
            raw = data[int(index[i, 0]) - base:int(index[i, 1]) - base]
            tokens += self._encode(self._line_text(raw, path, i + 1))
            if index[i, 3]:
                tokens.append(self.tokenizer.eos_token_id)
        line_start = int(cum[first - 1]) if first else 0
        if line_start + len(tokens) != int(cum[last]):
            raise RuntimeError(
                f'{path} no longer matches its index {self._index_file(path)}'
                f': delete the index files to rebuild them')
        return tokens[t0 - line_start:t1 - line_start]

    def chunk_tokens(self, idx: int) -> List[int]:
        """The stream tokens of chunk ``idx`` (without ``<s>``/``</s>``)."""
        size = self.max_text_len - 2
        t0, t1 = idx * size, min((idx + 1) * size, self._num_tokens)
        tokens: List[int] = []
        f = int(np.searchsorted(self._file_starts, t0, side='right')) - 1
        while t0 < t1:
            start, end = self._file_starts[f], self._file_starts[f + 1]
            if end > t0:
                stop = min(t1, end)
                tokens += self._file_tokens(f, t0 - start, stop - start)
                t0 = stop
            f += 1
        return tokens

    def get_data_info(self, idx: int) -> dict:
        """``text_ids``: ``<s>`` chunk ``</s>`` ``<pad>``... of
        ``max_text_len`` (int64)."""
        if not 0 <= idx < len(self):
            raise IndexError(f'chunk {idx} is out of range [0, {len(self)})')
        tok = self.tokenizer
        ids = np.full(self.max_text_len, tok.pad_token_id, np.int64)
        chunk = [tok.bos_token_id] + self.chunk_tokens(idx) + [
            tok.eos_token_id
        ]
        ids[:len(chunk)] = chunk
        return dict(text_ids=ids, source='text', sample_idx=idx)
