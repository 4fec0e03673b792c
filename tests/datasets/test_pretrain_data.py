"""Pretraining data: text packing, lazy indexes, pair shards, per-batch
mixing over ranks, resuming, mixed batches through the model's data
preprocessor, bad input and unreadable samples."""
import json
import logging
import os
import os.path as osp
import runpy
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import ROOT
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from torch.utils.data import ConcatDataset, DataLoader

import beit3_mm  # noqa: F401
from beit3_mm.datasets.pretrain import (GuardedDataset, ImageTextPairs,
                                        ImageTextShards, MixedSourceSampler,
                                        PackPretrainInputs,
                                        PretrainTextCorpus, load_pairs,
                                        split_batch)
from beit3_mm.demo.pretrain import make_pretrain_demo
from beit3_mm.engine.hooks import MixedSourceResumeHook
from beit3_mm.models.selfsup import BEiT3PretrainDataPreprocessor
from beit3_mm.models.selfsup.beit3_pretrain import split_by_source
from beit3_mm.models.multimodal.tokenizer import BEiT3Tokenizer

SHARD_TOOL = osp.join(ROOT, 'tools/dataset_converters/pairs_to_shards.py')


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('demo_pretrain'))
    files = make_pretrain_demo(root, num_images=12, num_pairs=10,
                               num_docs=40, pairs_per_shard=8, vocab_size=60)
    return root, files


@pytest.fixture(scope='module')
def tok(demo):
    root, files = demo
    return BEiT3Tokenizer(osp.join(root, files['tokenizer']))


def write(path, text: str) -> str:
    with open(path, 'w') as f:
        f.write(text)
    return str(path)


def expected_chunks(docs, tok, max_len):
    """The packing of the docstring, written out: documents (lists of
    lines) to one stream, each followed by </s>, cut into chunks."""
    stream = []
    for doc in docs:
        for line in doc:
            stream += tok.encode(line, add_special_tokens=False)
        stream.append(2)
    size = max_len - 2
    chunks = []
    for k in range(0, len(stream), size):
        ids = [0] + stream[k:k + size] + [2]
        chunks.append(ids + [1] * (max_len - len(ids)))
    return chunks


# ---- text corpus ---------------------------------------------------------
def test_packing_is_exact(tmp_path, tok):
    lines = ['a red circle on the left', 'two shapes',
             'one blue square in the right half and a green cross', 'no',
             'a yellow triangle to the right of a red circle']
    corpus = write(tmp_path / 'c.txt', '\n'.join(lines) + '\n')
    for max_len in (3, 5, 8, 64):
        ds = PretrainTextCorpus(corpus, tok, max_text_len=max_len)
        expected = expected_chunks([[line] for line in lines], tok, max_len)
        got = [ds[i]['text_ids'].tolist() for i in range(len(ds))]
        assert got == expected, max_len
        assert ds[0]['source'] == 'text'
    # a document that ends exactly at the end of a chunk: </s> </s>
    first = tok.encode(lines[0], add_special_tokens=False)
    ds = PretrainTextCorpus(corpus, tok, max_text_len=len(first) + 3)
    assert ds[0]['text_ids'].tolist() == [0] + first + [2, 2]
    assert ds[1]['text_ids'][0] == 0

    # paragraphs (blank lines between documents; lines tokenised one by
    # one), jsonl, and a stream that continues across files
    para = write(tmp_path / 'p.txt', 'two shapes\nno\n\n\nred circle\n\n')
    jsonl = write(tmp_path / 'j.jsonl',
                  '\n'.join(json.dumps(dict(text=t)) for t in lines[:2]))
    with pytest.raises(ValueError, match='empty line'):  # 'line' format
        PretrainTextCorpus(para, tok, max_text_len=7)
    ds = PretrainTextCorpus([para], tok, max_text_len=7,
                            doc_format='paragraph')
    assert [ds[i]['text_ids'].tolist() for i in range(len(ds))] == \
        expected_chunks([['two shapes', 'no'], ['red circle']], tok, 7)
    ds = PretrainTextCorpus(['c.txt', 'j.jsonl'], tok, max_text_len=7,
                            data_root=str(tmp_path))
    assert [ds[i]['text_ids'].tolist() for i in range(len(ds))] == \
        expected_chunks([[t] for t in lines + lines[:2]], tok, 7)


def test_index_is_lazy_and_cached(tmp_path, tok, monkeypatch):
    lines = [f'a red circle and {i} blue squares on the left' for i in
             range(400)]
    corpus = write(tmp_path / 'big.txt', '\n'.join(lines) + '\n')
    ds = PretrainTextCorpus(corpus, tok, max_text_len=16)
    assert isinstance(ds._indexes[0], np.memmap)
    assert osp.isfile(corpus + '.idx.npy')
    reads = []
    read = ds._reader.read
    monkeypatch.setattr(ds._reader, 'read',
                        lambda *a: reads.append(a) or read(*a))
    k = len(ds) // 2
    assert ds[k]['text_ids'].tolist() == expected_chunks(
        [[t] for t in lines], tok, 16)[k]
    # one positional read of the two or three lines the chunk spans
    (path, start, end), = reads
    assert path == corpus and end - start < 3 * len(lines[0]) + 6
    assert start >= len('\n'.join(lines[:k // 2]))

    # a second dataset loads the index without tokenising again ...
    def fail(*args):
        raise AssertionError('index rebuilt')

    monkeypatch.setattr(PretrainTextCorpus, '_build_index', fail)
    assert len(PretrainTextCorpus(corpus, tok, max_text_len=16)) == len(ds)
    # ... until the corpus changes
    write(corpus, '\n'.join(lines[:10]) + '\n')
    with pytest.raises(AssertionError, match='index rebuilt'):
        PretrainTextCorpus(corpus, tok, max_text_len=16)
    monkeypatch.undo()
    index_dir = tmp_path / 'idx'
    index_dir.mkdir()
    ds = PretrainTextCorpus(corpus, tok, max_text_len=16,
                            index_dir=str(index_dir))
    assert len(os.listdir(index_dir)) == 2
    assert ds[0]['text_ids'].tolist() == expected_chunks(
        [[t] for t in lines[:10]], tok, 16)[0]


# ---- image-text pairs ----------------------------------------------------
def test_shards_round_trip(demo, tmp_path, monkeypatch):
    """json -> pairs_to_shards.py -> ImageTextShards gives the pairs of
    ImageTextPairs with the same images, COCO and LAVIS json alike."""
    from mmcv.transforms import LoadImageFromFile
    root, files = demo
    lavis = osp.join(root, files['captions'])
    pairs = ImageTextPairs(lavis, data_prefix=files['pair_images'],
                           data_root=root)
    items = json.load(open(lavis))
    assert len(pairs) == sum(len(a['caption']) for a in items) == 30
    # the same pairs as COCO captions json, annotations in another order
    coco = dict(
        images=[dict(id=i, file_name=a['image']) for i, a in
                enumerate(items)],
        annotations=[dict(id=j, image_id=i, caption=c)
                     for j, (i, c) in enumerate(
                         (i, c) for i, a in reversed(list(enumerate(items)))
                         for c in a['caption'])])
    coco_file = write(tmp_path / 'coco.json', json.dumps(coco))
    assert sorted(load_pairs(coco_file)) == sorted(load_pairs(lavis))

    out = str(tmp_path / 'shards')
    monkeypatch.setattr(sys, 'argv', [
        SHARD_TOOL, coco_file, '--img-root',
        osp.join(root, files['pair_images']), '--out', out,
        '--pairs-per-shard', '7'
    ])
    runpy.run_path(SHARD_TOOL, run_name='__main__')
    # images whole in a shard: 10 images of 3 captions, >= 7 per shard
    assert sorted(os.listdir(out)) == [
        f'pairs-00000{i}.tar{x}' for i in range(4) for x in ('', '.idx.npy')
    ]
    shards = ImageTextShards('shards/*.tar', data_root=str(tmp_path))
    assert len(shards) == len(pairs)
    load = LoadImageFromFile()
    got = sorted((s['text'], s['img'].tobytes()) for s in shards)
    want = sorted((p['text'], load(dict(p))['img'].tobytes()) for p in pairs)
    assert got == want
    s = shards[0]
    assert s['source'] == 'pair' and s['img'].shape == (32, 32, 3)
    # the index is rebuilt from the tar headers when missing
    os.remove(osp.join(out, 'pairs-000001.tar.idx.npy'))
    again = ImageTextShards(osp.join(out, 'pairs-*.tar'))
    assert [again[i]['text'] for i in range(len(again))] == \
        [shards[i]['text'] for i in range(len(shards))]


# ---- mixing ------------------------------------------------------------
def sources(sizes):
    return ConcatDataset([list(range(n)) for n in sizes])


def batches(sampler, num, batch_size):
    it = iter(sampler)
    return [[next(it) for _ in range(batch_size)] for _ in range(num)]


@pytest.mark.parametrize('batch_size,ratio', [(6, [1, 1, 1]), (7, [1, 1, 1]),
                                              (10, [2, 1, 1]),
                                              (5, [1, 0, 3]), (3, [0, 0, 1])])
def test_mixing_is_exact_per_batch(batch_size, ratio):
    data = sources([13, 9, 11])
    sampler = MixedSourceSampler(data, batch_size, ratio, seed=3)
    counts = split_batch(batch_size, ratio)
    assert sum(counts) == batch_size
    assert all(abs(c - batch_size * r / sum(ratio)) < 1
               for c, r in zip(counts, ratio))
    cum = [0] + data.cumulative_sizes
    for batch in batches(sampler, 20, batch_size):
        src = [int(np.searchsorted(cum, i, side='right')) - 1 for i in batch]
        assert src == sorted(src)  # consecutive, in dataset order
        assert [src.count(s) for s in range(3)] == counts


def test_mixing_reuses_mmdet_stream():
    from mmdet.datasets.samplers import MultiSourceSampler
    data = sources([13, 9, 11])
    for rank in range(2):
        ours = MixedSourceSampler(data, 6, [1, 1, 1], seed=5, rank=rank,
                                  world_size=2)
        theirs = MultiSourceSampler(data, 6, [1, 1, 1], seed=5)
        theirs.rank, theirs.world_size = rank, 2
        theirs.source2inds = {
            s: theirs._indices_of_rank(len(d))
            for s, d in enumerate(data.datasets)
        }
        assert batches(ours, 30, 6) == batches(theirs, 30, 6)


def test_ranks_disjoint_and_deterministic():
    sizes = [12, 8, 16]
    data = sources(sizes)
    cum = [0] + data.cumulative_sizes
    per_rank = []
    for rank in range(2):
        sampler = MixedSourceSampler(data, 6, [1, 1, 1], seed=7, rank=rank,
                                     world_size=2)
        # two batches per rank: 4 samples per source over both ranks
        per_rank.append(sum(batches(sampler, 2, 6), []))
        assert sum(batches(sampler, 2, 6), []) == per_rank[-1]
    assert not set(per_rank[0]) & set(per_rank[1])
    # one epoch of the smallest source over both ranks: each sample once
    seen = []
    for rank in range(2):
        sampler = MixedSourceSampler(data, 6, [1, 1, 1], seed=7, rank=rank,
                                     world_size=2)
        seen += [i for i in sum(batches(sampler, 2, 6), [])
                 if cum[1] <= i < cum[2]]
    assert sorted(seen) == list(range(cum[1], cum[2]))
    other = MixedSourceSampler(data, 6, [1, 1, 1], seed=8, rank=0,
                               world_size=2)
    assert sum(batches(other, 2, 6), []) != per_rank[0]


@pytest.mark.parametrize('shuffle', [True, False])
def test_start_iter_skips_exactly(shuffle):
    data = sources([5, 7, 3])
    for rank in range(2):
        def sampler(start):
            s = MixedSourceSampler(data, 5, [2, 1, 2], shuffle=shuffle,
                                   seed=1, rank=rank, world_size=2)
            s.start_iter = start
            return s
        full = batches(sampler(0), 12, 5)
        for k in (1, 3, 7):  # across several epochs of every source
            assert batches(sampler(k), 12 - k, 5) == full[k:]


def test_resume_hook_skips_without_loading():
    """The hook sets the resumed seed and start, and the loop's skip steps
    draw no data."""
    from mmengine.runner.loops import _InfiniteDataloaderIterator
    data = sources([5, 7, 3])
    loaded = []

    def collate(batch):
        loaded.append(batch)
        return batch

    def loader(seed):
        sampler = MixedSourceSampler(data, 4, [1, 1, 2], seed=seed)
        return DataLoader(data, batch_size=4, sampler=sampler,
                          collate_fn=collate)

    reference = _InfiniteDataloaderIterator(loader(11))
    full = [next(reference) for _ in range(8)]
    # a resumed run: built with a fresh seed, then the checkpoint's (11)
    loop = SimpleNamespace(dataloader=loader(99), iter=5,
                           dataloader_iterator=None)
    runner = SimpleNamespace(train_loop=loop, seed=11, _randomness_cfg={})
    MixedSourceResumeHook().before_train(runner)
    loaded.clear()
    assert [next(loop.dataloader_iterator) for _ in range(5)] == [None] * 5
    assert not loaded
    assert [next(loop.dataloader_iterator) for _ in range(3)] == full[5:]

    loop = SimpleNamespace(dataloader=DataLoader(
        data, batch_size=3,
        sampler=MixedSourceSampler(data, 4, [1, 1, 2], seed=1)), iter=0)
    with pytest.raises(ValueError, match='batch_size=3 differs'):
        MixedSourceResumeHook().before_train(SimpleNamespace(train_loop=loop))


# ---- the mixed batch ---------------------------------------------------
def test_mixed_batch_reaches_the_model(demo):
    root, files = demo
    tokenizer = dict(type='BEiT3Tokenizer',
                     name_or_path=osp.join(root, files['tokenizer']))
    DefaultScope.get_instance('test_pretrain_data', scope_name='mmpretrain')
    crop = dict(type='RandomResizedCrop', scale=24, crop_ratio_range=(0.5, 1))
    loader = Runner.build_dataloader(
        dict(
            batch_size=7,
            num_workers=1,
            sampler=dict(type='MixedSourceSampler', batch_size=7,
                         source_ratio=[1, 1, 1]),
            dataset=dict(
                type='ConcatDataset',
                ignore_keys=['classes'],
                datasets=[
                    dict(type='CustomDataset', data_root=root,
                         data_prefix=files['images'], with_label=False,
                         pipeline=[
                             dict(type='LoadImageFromFile'), crop,
                             dict(type='PackPretrainInputs', source='image')
                         ]),
                    dict(type='PretrainTextCorpus', data_root=root,
                         data_files=files['corpus'], tokenizer=tokenizer,
                         max_text_len=16,
                         pipeline=[dict(type='PackPretrainInputs')]),
                    dict(type='ImageTextShards', data_root=root,
                         shards=files['shards'],
                         pipeline=[crop, dict(type='PackPretrainInputs')]),
                ])),
        seed=0)
    batch = next(iter(loader))  # mmengine's default pseudo_collate
    samples = batch['data_samples']
    assert [s.source for s in samples] == ['image'] * 3 + ['text'] * 2 + [
        'pair'
    ] * 2
    assert [img is None for img in batch['inputs']] == [False] * 3 + [
        True
    ] * 2 + [False] * 2
    assert batch['inputs'][0].shape == (3, 24, 24)
    assert batch['inputs'][0].dtype == torch.uint8
    assert samples[3].text_ids.shape == (16, ) and samples[3].text_ids[0] == 0
    assert isinstance(samples[5].text, str) and 'text_ids' not in samples[5]

    pre = BEiT3PretrainDataPreprocessor(mean=[127.5] * 3, std=[127.5] * 3,
                                        to_rgb=True)
    data = pre(batch, training=True)
    images = data['images']
    assert images.shape == (5, 3, 24, 24)
    assert images.dtype == torch.float32 and images.abs().max() <= 1
    groups = split_by_source(data['data_samples'])
    assert {s: (None if rows is None else rows.tolist(),
                [d.sample_idx for d in group])
            for s, (rows, group) in groups.items()} == {
                'image': ([0, 1, 2], [d.sample_idx for d in samples[:3]]),
                'text': (None, [d.sample_idx for d in samples[3:5]]),
                'pair': ([3, 4], [d.sample_idx for d in samples[5:]])}
    # the same batch with RGB flipped back is the loaded images
    rgb = torch.stack([img for img in batch['inputs'] if img is not None])
    torch.testing.assert_close(images, rgb.flip(1).float() / 127.5 - 1)


# ---- bad input ----------------------------------------------------------
def one_line_error(err, *words):
    msg = str(err.value)
    assert '\n' not in msg, msg
    for word in words:
        assert word in msg, msg


def test_bad_input(tmp_path, tok, demo):
    root, files = demo
    with pytest.raises(FileNotFoundError) as err:
        PretrainTextCorpus(str(tmp_path / 'missing.txt'), tok)
    one_line_error(err, 'missing.txt', 'fix data_files')
    with pytest.raises(ValueError) as err:
        PretrainTextCorpus(write(tmp_path / 'empty.txt', ''), tok)
    one_line_error(err, 'empty.txt', 'holds no text', 'non-empty')
    with pytest.raises(ValueError) as err:
        PretrainTextCorpus(write(tmp_path / 'gap.txt', 'a\n\nb\n'), tok)
    one_line_error(err, 'gap.txt:2', 'empty line', "doc_format='paragraph'")
    with pytest.raises(ValueError) as err:
        PretrainTextCorpus(write(tmp_path / 'bad.jsonl', '{"txt": "a"}\n'),
                           tok)
    one_line_error(err, 'bad.jsonl:1', 'text_key')
    with pytest.raises(ValueError) as err:
        PretrainTextCorpus(write(tmp_path / 'bad2.jsonl', 'a\n'), tok)
    one_line_error(err, 'bad2.jsonl:1', 'JSON object')

    with pytest.raises(FileNotFoundError) as err:
        ImageTextPairs(str(tmp_path / 'nope.json'))
    one_line_error(err, 'nope.json', 'fix ann_file')
    with pytest.raises(ValueError) as err:
        ImageTextPairs(write(tmp_path / 'wrong.json', '{"images": []}'))
    one_line_error(err, 'wrong.json', 'COCO captions', 'LAVIS', 'convert')
    with pytest.raises(ValueError) as err:
        ImageTextPairs(write(tmp_path / 'broken.json', '[{"image": '))
    one_line_error(err, 'broken.json', 'not valid JSON')
    with pytest.raises(ValueError) as err:
        ImageTextPairs(
            write(tmp_path / 'nocap.json', '[{"image": "a.png", '
                  '"caption": " "}]'))
    one_line_error(err, 'nocap.json', "'a.png'", 'empty')
    with pytest.raises(FileNotFoundError) as err:
        ImageTextShards(str(tmp_path / 'none-*.tar'))
    one_line_error(err, 'none-*.tar', 'fix shards')
    shard = osp.join(root, 'pairs/shards/pairs-000000.tar')
    broken = tmp_path / 'broken.tar'
    data = bytearray(open(shard, 'rb').read())
    ix = np.load(shard + '.idx.npy')
    data[ix[0, 0]:ix[0, 0] + ix[0, 1]] = bytes(ix[0, 1])
    broken.write_bytes(bytes(data))
    with pytest.raises(ValueError) as err:
        ImageTextShards(str(broken))[0]
    one_line_error(err, f'{broken}/{ix[0, 0]}', 'cannot be decoded')

    data = sources([4, 0, 4])
    for ratio, words in (([0, 0, 0], ['positive sum']),
                         ([1, -1, 1], ['>= 0']), ([1, 1], ['one weight'])):
        with pytest.raises(ValueError) as err:
            MixedSourceSampler(data, 6, ratio, seed=0)
        one_line_error(err, f'source_ratio={ratio}', *words)
    with pytest.raises(ValueError) as err:
        MixedSourceSampler(data, 6, [1, 1, 1], seed=0)
    one_line_error(err, 'source 1', 'zero samples', 'ratio to 0')
    assert MixedSourceSampler(data, 6, [1, 0, 1], seed=0)
    with pytest.raises(ValueError) as err:
        MixedSourceSampler(sources([4, 4, 4]), 2, [1, 1, 1], seed=0)
    one_line_error(err, 'batch_size=2', 'source 2', 'raise batch_size')
    with pytest.raises(TypeError) as err:
        MixedSourceSampler(list(range(4)), 2, [1], seed=0)
    one_line_error(err, 'ConcatDataset')

    with pytest.raises(ValueError) as err:
        PackPretrainInputs()(dict(img=np.zeros((4, 4, 3), np.uint8)))
    one_line_error(err, 'source=None', "source='image'")
    with pytest.raises(ValueError) as err:
        PackPretrainInputs(source='pair')(
            dict(img=np.zeros((4, 4, 3), np.uint8), img_path='x.png'))
    one_line_error(err, 'x.png', 'caption')


class _Indexed(torch.utils.data.Dataset):
    """Items ``{'inputs': index}``; ``loads`` (of the class: the Runner
    copies the dataset) records the loads."""
    loads: list = []

    def __init__(self, size: int):
        self.size = size

    def __len__(self):
        return self.size

    def __getitem__(self, idx):
        self.loads.append(idx)
        return dict(inputs=torch.tensor(idx))


def test_resume_continues_the_interrupted_run(tmp_path):
    """mmengine Runner, --resume at iteration 3 of 6: iterations 4-6 get
    the batches of an uninterrupted run, and the 3 finished ones load no
    data; the seed (none in the resuming config) comes from the
    checkpoint."""
    from mmengine.model import BaseModel
    seen, loads = [], _Indexed.loads

    class Recorder(BaseModel):

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, inputs, data_samples=None, mode='loss'):
            seen.append([int(i) for i in inputs])
            return dict(loss=self.w.sum() * 0)

    def run(work_dir, max_iters, seed=5, resume=None):
        data = ConcatDataset([_Indexed(n) for n in (5, 7, 3)])
        runner = Runner(
            model=Recorder(), work_dir=str(work_dir),
            train_dataloader=dict(
                batch_size=4, num_workers=0, dataset=data,
                sampler=dict(type='MixedSourceSampler', batch_size=4,
                             source_ratio=[1, 1, 2])),
            optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
            train_cfg=dict(type='IterBasedTrainLoop', max_iters=max_iters),
            default_hooks=dict(checkpoint=dict(
                type='CheckpointHook', interval=3, by_epoch=False)),
            custom_hooks=[dict(type='MixedSourceResumeHook')],
            log_processor=dict(by_epoch=False),
            load_from=resume, resume=resume is not None,
            randomness=dict(seed=seed),
            default_scope=None)
        runner.train()

    run(tmp_path / 'full', 6)
    full = seen[:]
    seen.clear()
    run(tmp_path / 'part', 3)
    assert seen == full[:3]
    seen.clear()
    loads.clear()
    run(tmp_path / 'part', 6, seed=None,
        resume=str(tmp_path / 'part/iter_3.pth'))
    assert seen == full[3:]
    assert len(loads) == 3 * 4


# ---- unreadable samples -------------------------------------------------
def test_unreadable_samples_stop_or_are_skipped_and_counted(
        tmp_path, demo, monkeypatch):
    """A corrupt and a missing image among readable ones: on_error='raise'
    stops with the path, 'skip' logs each with the running count and gives
    the next readable sample."""
    root, files = demo
    pairs = json.load(open(osp.join(root, files['captions'])))[:4]
    for pair in pairs:
        pair['image'] = osp.join(root, files['pair_images'], pair['image'])
    (tmp_path / 'corrupt.png').write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(64))
    pairs[1]['image'] = str(tmp_path / 'corrupt.png')
    pairs[2]['image'] = str(tmp_path / 'missing.png')
    ann = write(tmp_path / 'pairs.json', json.dumps(pairs))
    pairs_cfg = dict(
        type='ImageTextPairs', ann_file=ann,
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='PackPretrainInputs')])
    DefaultScope.get_instance('test_unreadable', scope_name='mmpretrain')
    strict = GuardedDataset(pairs_cfg)
    assert len(strict) == len(ImageTextPairs(ann)) == 12  # 3 captions each
    assert strict[0]['data_samples'].text
    with pytest.raises(RuntimeError) as err:
        strict[3]  # the first caption of the corrupt image
    one_line_error(err, 'sample 3 of ImageTextPairs', 'corrupt.png',
                   "on_error='skip'")

    from beit3_mm.datasets.pretrain import guard
    logged = []
    monkeypatch.setattr(guard, 'print_log',
                        lambda msg, **kwargs: logged.append((msg, kwargs)))
    skipping = GuardedDataset(pairs_cfg, on_error='skip')
    got = skipping[3]
    # 3 corrupt + 3 missing captions skipped, then the fourth image's
    assert got['data_samples'].img_path == pairs[3]['image']
    assert skipping.num_skipped == 6
    assert all(kw['level'] == logging.WARNING for _, kw in logged)
    logged = [msg for msg, _ in logged]
    assert len(logged) == 6
    assert 'corrupt.png' in logged[0] and '(1 skipped' in logged[0]
    assert 'missing.png' in logged[-1] and '(6 skipped' in logged[-1]
    with pytest.raises(ValueError, match="on_error='ignore' is unknown"):
        GuardedDataset(pairs_cfg, on_error='ignore')
    # in a mixed batch, as the configs use it
    data = torch.utils.data.ConcatDataset([skipping])
    assert MixedSourceSampler(data, 2, [1], seed=0)


def test_index_builder_finds_its_local_rank(monkeypatch):
    """mmengine's pytorch launcher sets up no local process group: the
    local rank then comes from the launcher's environment."""
    from beit3_mm.datasets.pretrain import utils

    def no_group():
        raise RuntimeError('Local process group is not created')

    monkeypatch.setattr(utils, 'get_local_rank', no_group)
    monkeypatch.setenv('LOCAL_RANK', '1')
    assert utils.local_rank() == 1
    monkeypatch.delenv('LOCAL_RANK')
    assert utils.local_rank() == 0
