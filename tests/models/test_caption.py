"""Captioning: parity with the official seq2seq forward and beam search
(torchscale with its incremental state), the training corruption and loss,
the key/value cache, released files and bad input."""
import json
import math
import os.path as osp
import random
import uuid
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from helpers import (ROOT, TINY, TINY_IMG, VOCAB, build_model,
                     converted_model, padded_ids, plain_optim_wrapper,
                     pretrain_heads, random_heads, randomize_,
                     save_released, torchscale_beit3)
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmpretrain.structures import DataSample

import beit3_mm  # noqa: F401
from beit3_mm.demo import make_vl_demo
from beit3_mm.demo.shapes import SHAPES, train_demo_tokenizer
from beit3_mm.models.layers import KVCache
from beit3_mm.models.multimodal import BEiT3Caption, caption_loss
from beit3_mm.registry import MODELS

SENTENCES = [
    f'a {size} {colour} {shape} on a dark background'
    for size in ('small', 'big') for colour in ('red', 'green', 'blue')
    for shape in SHAPES
]
EOS = 2


@pytest.fixture(scope='module')
def spm(tmp_path_factory) -> str:
    """A tiny sentencepiece model standing in for beit3.spm."""
    return train_demo_tokenizer(
        SENTENCES, str(tmp_path_factory.mktemp('tok') / 'demo.spm'),
        vocab_size=60)


def model_cfg(spm: str, vocab_size: int = VOCAB, **kwargs) -> dict:
    return dict(
        type='BEiT3Caption',
        backbone=dict(type='BEiT3', arch=TINY, img_size=TINY_IMG,
                      vocab_size=vocab_size, output_norm=True),
        tokenizer=dict(type='BEiT3Tokenizer', name_or_path=spm),
        **kwargs)


def build(spm: str, seed: int = 0, **kwargs) -> BEiT3Caption:
    """A tiny captioner with random, non-trivial weights."""
    model = MODELS.build(model_cfg(spm, **kwargs)).eval()
    randomize_(model, seed)
    return model


def images_of(batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, TINY_IMG, TINY_IMG, generator=g)


def set_iter(step: int) -> None:
    """The global step as mmengine's RuntimeInfoHook publishes it."""
    MessageHub.get_instance(f'caption-{uuid.uuid4()}').update_info(
        'iter', step)


# --------------------------------------------- the official code, restated
def official_uni_mask(image_len: int, text_len: int) -> torch.Tensor:
    """``BEiT3ForCaptioning.forward``'s mask, 1 = blocked."""
    max_len = text_len + image_len
    uni_mask = torch.zeros((max_len, max_len), dtype=torch.long)
    uni_mask[image_len:, image_len:] = torch.tril(
        torch.ones(text_len, text_len, dtype=torch.long))
    uni_mask[image_len:, :image_len] = 1
    uni_mask[:image_len, :image_len] = 1
    return 1 - uni_mask


def official_forward(ref, head, image, text_ids, padding_mask, masked_pos,
                     text_len=None, incremental_state=None):
    """``BEiT3ForCaptioning.forward`` written out over torchscale."""
    text_len = text_len if text_len is not None else text_ids.size(1)
    image_len = ref.vision_embed.num_position_embeddings()
    uni_mask = official_uni_mask(image_len, text_len)
    if incremental_state is not None:
        for idx in range(len(ref.encoder.layers)):
            incremental_state.setdefault(idx, {})
    positions = None
    if image is None:
        uni_mask = uni_mask[-2:]
        padding_mask = None
        positions = torch.arange(text_len, text_ids.size(1) + text_len)[None]
    out = ref(textual_tokens=text_ids, visual_tokens=image,
              text_padding_position=padding_mask, attn_mask=uni_mask,
              incremental_state=incremental_state,
              positions=positions)['encoder_out']
    feats = out[:, image_len:] if image is not None else out
    if masked_pos is not None:
        feats = feats[masked_pos.bool()]
    return head(feats), incremental_state


class OfficialBeamHypotheses:
    """unilm/beit3 utils.py ``BeamHypotheses``."""

    def __init__(self, n_hyp, max_length, length_penalty):
        self.max_length = max_length - 1
        self.length_penalty = length_penalty
        self.n_hyp = n_hyp
        self.hyp = []
        self.worst_score = 1e9

    def add(self, hyp, sum_logprobs):
        score = sum_logprobs / len(hyp)**self.length_penalty
        if len(self.hyp) < self.n_hyp or score > self.worst_score:
            self.hyp.append((score, hyp))
            if len(self.hyp) > self.n_hyp:
                sorted_scores = sorted(
                    [(s, idx) for idx, (s, _) in enumerate(self.hyp)])
                del self.hyp[sorted_scores[0][1]]
                self.worst_score = sorted_scores[1][0]
            else:
                self.worst_score = min(score, self.worst_score)

    def is_done(self, best_sum_logprobs):
        if len(self.hyp) < self.n_hyp:
            return False
        return self.worst_score >= (best_sum_logprobs /
                                    self.max_length**self.length_penalty)


@torch.no_grad()
def official_generate(ref, head, image, num_beams, max_len, length_penalty,
                      mask_id, num_ids, pad_id=1):
    """``CaptioningHandler.eval_batch`` of unilm/beit3 (incremental state
    of torchscale), written out; returns the word ids and score of each
    image's best hypothesis. One difference, ours: the head's rows from
    ``num_ids`` on (ids the tokenizer lacks, which the official search may
    pick and then cannot detokenise) are excluded."""
    K, B = num_beams, image.size(0)
    cur_len = 2
    cls_ids = torch.zeros(B, 1, dtype=torch.long)
    mask_ids = torch.full((B, 1), mask_id)
    cur_input_ids = torch.cat([cls_ids, mask_ids], dim=1)
    decoding_results = torch.cat(
        [cls_ids, torch.full((B, max_len - 1), mask_id)], dim=1)
    cur_input_ids = cur_input_ids.repeat_interleave(K, dim=0)
    decoding_results = decoding_results.repeat_interleave(K, dim=0)
    image = image.repeat_interleave(K, dim=0)
    hyps = [OfficialBeamHypotheses(1, max_len, length_penalty)
            for _ in range(B)]
    beam_scores = torch.zeros(B, K, dtype=torch.float)
    beam_scores[:, 1:] = -1e9
    beam_scores = beam_scores.view(-1)
    done = [False] * B
    incremental_state = {}
    while cur_len <= max_len:
        outputs, incremental_state = official_forward(
            ref, head, image if cur_len == 2 else None, cur_input_ids,
            torch.zeros_like(cur_input_ids), None, text_len=cur_len,
            incremental_state=incremental_state)
        logits = outputs[:, 1].float()
        logits[:, num_ids:] = -math.inf
        scores = F.log_softmax(logits, dim=-1)
        V = scores.shape[1]
        _scores = (scores + beam_scores[:, None]).view(B, K * V)
        next_scores, next_words = torch.topk(
            _scores, 3 * K, dim=1, largest=True, sorted=True)
        next_batch_beam = []
        for b in range(B):
            done[b] = done[b] or hyps[b].is_done(next_scores[b].max().item())
            if done[b]:
                next_batch_beam.extend([(0, pad_id, 0)] * K)
                continue
            next_sent_beam = []
            for idx, score in zip(next_words[b], next_scores[b]):
                beam_id, word_id = idx // V, idx % V
                if (word_id.item() == EOS and cur_len + 1 <= max_len) or (
                        cur_len + 1 == max_len):
                    hyps[b].add(
                        decoding_results[b * K + beam_id, :cur_len].clone(),
                        score.item())
                else:
                    next_sent_beam.append(
                        (score.item(), word_id.item(), b * K + beam_id))
                if len(next_sent_beam) == K:
                    break
            if not next_sent_beam:
                next_sent_beam = [(0, pad_id, 0)] * K
            next_batch_beam.extend(next_sent_beam)
        beam_scores = torch.tensor([float(x[0]) for x in next_batch_beam])
        beam_words = torch.tensor([int(x[1]) for x in next_batch_beam])
        beam_idx = torch.tensor([int(x[2]) for x in next_batch_beam])
        decoding_results = decoding_results[beam_idx]
        for module in incremental_state.values():
            for key in module:
                module[key] = module[key].index_select(0,
                                                       beam_idx)[:, :, :-1]
        cur_input_ids = torch.cat(
            [beam_words[:, None], torch.full((B * K, 1), mask_id)], dim=1)
        decoding_results[:, cur_len - 1] = beam_words
        cur_len += 1
        if all(done):
            break
    best = [max(h.hyp, key=lambda x: x[0]) for h in hyps]
    # the hypothesis is <s>, the words and the <mask> slot
    return [hyp[1:-1].tolist() for _, hyp in best], [s for s, _ in best]


def caption_heads(dims: int, seed: int = 1) -> dict:
    return random_heads(
        {'mlm_head.weight': (VOCAB, dims), 'mlm_head.bias': (VOCAB, )}, seed)


def head_of(heads: dict) -> torch.nn.Linear:
    head = torch.nn.Linear(*heads['mlm_head.weight'].shape[::-1])
    head.load_state_dict({k[len('mlm_head.'):]: v for k, v in heads.items()})
    return head


def official_model(seed=0, scale=1., eos_bias=0.):
    """torchscale BEiT-3 plus an ``mlm_head``, its weight scaled by
    ``scale`` (confident, image-dependent words) and its ``</s>`` logit
    raised by ``eos_bias`` (so that captions end at different steps)."""
    ref = torchscale_beit3(TINY, TINY_IMG, output_norm=True, seed=seed)
    heads = caption_heads(TINY['embed_dims'], seed + 1)
    heads['mlm_head.weight'] *= scale
    heads['mlm_head.bias'][EOS] += eos_bias
    return ref, heads


# ------------------------------------------------------------------ parity
def test_released_caption_file_gives_official_logits(tmp_path, spm):
    """A released captioning file, through init_cfg and strictly through
    the converter, gives the official logits at the masked positions."""
    ref, heads = official_model()
    src = save_released(tmp_path / 'cap.pth', ref.state_dict(), heads)
    images = images_of(3)
    ids, pad = padded_ids([7, 10, 4], 10)
    g = torch.Generator().manual_seed(3)
    masked_pos = (torch.rand(3, 10, generator=g) < 0.5) & (pad == 0)
    masked_pos[:, 0] = False
    with torch.no_grad():
        expected, _ = official_forward(ref, head_of(heads), images, ids, pad,
                                       masked_pos)
    assert expected.shape == (int(masked_pos.sum()), VOCAB)

    cfg = Config(dict(model=model_cfg(
        spm, init_cfg=dict(type='Pretrained', checkpoint=src))))
    model = MODELS.build(cfg.model).eval()
    model.init_weights()
    converted = converted_model(cfg, src, str(tmp_path / 'cap_mm.pth'),
                                'captioning')
    for m in (model, converted):
        with torch.no_grad():
            torch.testing.assert_close(
                m.forward_logits(images, ids, pad, masked_pos), expected,
                rtol=0, atol=1e-5)


def test_pretraining_file_initialises_backbone_and_mlm_head(tmp_path, spm):
    ref = torchscale_beit3(TINY, TINY_IMG, output_norm=True, seed=2)
    heads = pretrain_heads(TINY['embed_dims'])
    src = save_released(tmp_path / 'pt.pth', ref.state_dict(), heads)
    model = MODELS.build(
        model_cfg(spm, init_cfg=dict(type='Pretrained', checkpoint=src)))
    model.init_weights()
    torch.testing.assert_close(model.mlm_head.weight,
                               heads['mlm_head.weight'], rtol=0, atol=0)
    torch.testing.assert_close(model.mlm_head.bias, heads['mlm_head.bias'],
                               rtol=0, atol=0)
    torch.testing.assert_close(model.backbone.text_embed.weight,
                               ref.text_embed.weight, rtol=0, atol=0)
    assert not hasattr(model, 'mim_head')


D = TINY['embed_dims']
OTHER_TASK_HEADS = dict(
    vqa={'pooler.dense.weight': (D, D), 'pooler.dense.bias': (D, ),
         'head.0.weight': (2 * D, D)},
    retrieval={'logit_scale': (), 'vision_head.weight': (D, D),
               'language_head.weight': (D, D)},
    in1k={'fc_norm.weight': (D, ), 'fc_norm.bias': (D, ),
          'head.weight': (10, D)},
    nlvr2={'head.dense1.weight': (2 * D, 4 * D)},
)


@pytest.mark.parametrize('kind', list(OTHER_TASK_HEADS))
def test_released_file_of_another_task_is_refused(tmp_path, spm, kind):
    """Its backbone was tuned for that task and mlm_head would stay
    random: one line naming the file, its task and what to use."""
    ref = torchscale_beit3(TINY, TINY_IMG, output_norm=False)
    src = save_released(tmp_path / f'{kind}.pth', ref.state_dict(),
                        random_heads(OTHER_TASK_HEADS[kind]))
    model = MODELS.build(
        model_cfg(spm, init_cfg=dict(type='Pretrained', checkpoint=src)))
    with pytest.raises(ValueError, match=f'{kind}.pth is a {kind} model.*'
                       'pretraining file.*init_cfg.checkpoint') as err:
        model.init_weights()
    assert '\n' not in str(err.value)


# ------------------------------------------------------------- the mask
def test_seq2seq_mask_is_official():
    from beit3_mm.models import BEiT3
    for image_len, text_len in ((5, 4), (17, 1), (3, 9)):
        torch.testing.assert_close(
            BEiT3.seq2seq_mask(image_len, text_len).long(),
            official_uni_mask(image_len, text_len), rtol=0, atol=0)


def test_text_sees_the_past_and_the_image_sees_no_text(spm):
    model = build(spm)
    images = images_of(2)
    ids, pad = padded_ids([9, 6], 9)
    later = ids.clone()
    later[:, 5] = (later[:, 5] + 7) % VOCAB  # change the 6th token
    junk_pad = ids.clone()
    junk_pad[1, 6:] = 50  # junk ids in the padding of sample 1
    with torch.no_grad():
        out = model.forward_logits(images, ids, pad)
        out_later = model.forward_logits(images, later, pad)
        out_pad = model.forward_logits(images, junk_pad, pad)
        n = 1 + (TINY_IMG // TINY['patch_size'])**2
        enc = [
            model.backbone.encode(
                images, t, pad,
                attn_mask=model.backbone.seq2seq_mask(n, 9))[:, :n]
            for t in (ids, later)
        ]
    # positions 0..4 do not see position 5; 5 and later do
    torch.testing.assert_close(out_later[:, :5], out[:, :5], rtol=0,
                               atol=1e-6)
    assert not torch.allclose(out_later[:, 5:6], out[:, 5:6], atol=1e-3)
    torch.testing.assert_close(out_pad[1, :6], out[1, :6], rtol=0, atol=1e-6)
    # the image tokens ignore the text, and equal an image-only encoding
    torch.testing.assert_close(enc[0], enc[1], rtol=0, atol=0)
    torch.testing.assert_close(
        model.extract_feat(images)['image_feats'], enc[0], rtol=0, atol=1e-5)


# ------------------------------------------------------ corruption, loss
@pytest.mark.parametrize('mask_prob', [0.6, 0.7, 0.15, 1.0])
def test_corruption_count_and_positions(spm, mask_prob):
    model = build(spm, mask_prob=mask_prob)
    lengths = [3, 4, 5, 8, 11, 16, 32]
    ids, pad = padded_ids(lengths, 32)
    for _ in range(20):
        new, pos = model.corrupt(ids, pad)
        expected = [min(max(int(n * mask_prob + 0.5), 1), n - 1)
                    for n in lengths]
        assert pos.sum(1).tolist() == expected
        assert not pos[:, 0].any()  # never <s>
        assert not (pos & (pad == 1)).any()  # never padding
        assert torch.equal(new[~pos], ids[~pos])


def test_corruption_statistics(spm):
    """80% <mask>, 10% kept, 10% a random id in [3, vocab_size - 1];
    every position of 1..n-1 equally likely; redrawn at each call."""
    torch.manual_seed(0)
    model = build(spm, mask_prob=0.5)
    tok = model.tokenizer
    n = 9
    ids, pad = padded_ids([n] * 4000, 12)
    new, pos = model.corrupt(ids, pad)
    assert pos.sum(1).eq(5).all()
    per_position = pos.float().mean(0)
    torch.testing.assert_close(per_position[1:n],
                               torch.full((n - 1, ), 5 / 8), rtol=0,
                               atol=0.03)
    chosen, original = new[pos], ids[pos]
    is_mask = chosen == tok.mask_token_id
    assert abs(is_mask.float().mean() - 0.8) < 0.01
    random_ids = chosen[~is_mask & (chosen != original)]
    # a random id equals the original one time in (vocab_size - 3)
    kept = (~is_mask & (chosen == original)).float().mean()
    p_same = 1 / (tok.vocab_size - 3)
    assert abs(kept - (0.1 + 0.1 * p_same)) < 0.01
    counts = Counter(random_ids.tolist())
    assert set(counts) <= set(range(3, tok.vocab_size))  # mask id included
    assert len(counts) > tok.vocab_size - 6  # spread over the range
    again, pos2 = model.corrupt(ids, pad)
    assert not torch.equal(pos, pos2)


def restated_loss(logits, labels, eps, drop_ratio):
    """unilm/beit3 utils.py ``BertCaptioningLoss``."""
    V = logits.shape[1]
    one_hot = torch.zeros_like(logits).scatter(1, labels.view(-1, 1), 1)
    one_hot = one_hot * (1 - eps) + (1 - one_hot) * eps / (V - 1)
    loss = F.kl_div(F.log_softmax(logits, dim=1), one_hot,
                    reduction='none').sum(1)
    if drop_ratio > 0:
        loss, _ = torch.topk(loss, k=int(loss.shape[0] * (1 - drop_ratio)),
                             largest=False)
    return loss.mean()


@pytest.mark.parametrize('eps,drop', [(0.1, 0.), (0.1, 0.2), (0., 0.3)])
def test_caption_loss_is_official(eps, drop):
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(37, VOCAB, generator=g)
    labels = torch.randint(0, VOCAB, (37, ), generator=g)
    torch.testing.assert_close(
        caption_loss(logits, labels, eps, drop),
        restated_loss(logits, labels, eps, drop), rtol=1e-5, atol=1e-6)


def test_loss_drops_the_worst_after_the_step(spm):
    """model.loss: the official loss of freshly corrupted captions, the
    worst 20% of the token losses dropped only after drop_worst_after
    (mmengine's global step), and the masked-token accuracy."""
    model = build(spm, drop_worst_after=100).train()
    images = images_of(3)
    samples = [DataSample(gt_caption=c, image_id=i) for i, c in enumerate(
        ['a big red circle', 'a small blue square on a dark background',
         ['a green triangle', 'a green triangle on a dark background']])]
    for step, drop in ((100, 0.), (101, 0.2)):
        set_iter(step)
        torch.manual_seed(step)
        random_state = random.getstate()
        out = model.loss(images, samples)
        torch.manual_seed(step)
        random.setstate(random_state)
        ids, pad = model.tokenize(model._captions(samples))
        new, pos = model.corrupt(ids, pad)
        with torch.no_grad():
            logits = model.forward_logits(images, new, pad, pos)
        labels = ids[pos]
        torch.testing.assert_close(
            out['loss'], restated_loss(logits, labels, 0.1, drop), rtol=1e-5,
            atol=1e-6)
        torch.testing.assert_close(
            out['acc'], (logits.argmax(-1) == labels).float().mean())
        assert not out['acc'].requires_grad
    out['loss'].backward()
    assert model.mlm_head.weight.grad.abs().sum() > 0
    assert model.backbone.text_embed.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- decoding
def caption_model_of(ref, heads, spm) -> BEiT3Caption:
    model = MODELS.build(model_cfg(spm)).eval()
    model.backbone.load_state_dict(ref.state_dict(), strict=True)
    model.mlm_head.load_state_dict(
        {k[len('mlm_head.'):]: v for k, v in heads.items()})
    return model


@pytest.fixture(scope='module')
def decode_pair(spm):
    """The official model and ours with the same weights, in float64;
    ``</s>`` raised so that the captions end at different steps."""
    ref, heads = official_model(seed=4, scale=5., eos_bias=2.5)
    model = caption_model_of(ref, heads, spm).double()
    return ref.double(), head_of(heads).double(), model


def test_decode_is_official_and_cached_equals_uncached(decode_pair):
    """Greedy and beam search give the official captions and scores, with
    and without the cache, for captions of different lengths."""
    ref, head, model = decode_pair
    images = images_of(4, seed=5).double()
    max_len = 12
    results = {}
    for num_beams in (1, 3):
        expected, expected_scores = official_generate(
            ref, head, images, num_beams, max_len, 0.6,
            model.tokenizer.mask_token_id, len(model.tokenizer))
        results[num_beams] = expected
        # different lengths, some cut at max_len - 3 words
        lengths = [len(w) for w in expected]
        assert len(set(lengths)) > 2 and max(lengths) == max_len - 3
        for use_cache in (True, False):
            words, scores = model.generate(
                images, num_beams=num_beams, max_len=max_len,
                use_cache=use_cache)
            assert words == expected, (num_beams, use_cache)
            assert scores == pytest.approx(expected_scores, rel=1e-5)
    assert results[1] != results[3]  # the beams matter


def test_max_len_4_is_the_shortest_with_words(decode_pair, spm):
    """At max_len=3 the official search closes every beam at its first
    step and returns empty captions only (hence max_len >= 4, refused
    below); at 4 ours gives the official captions of at most one word, and
    one word each when </s> is unlikely."""
    ref, head, model = decode_pair
    images = images_of(4, seed=5).double()
    ids = model.tokenizer.mask_token_id, len(model.tokenizer)
    for num_beams in (1, 3):
        empty, _ = official_generate(ref, head, images, num_beams, 3, 0.6,
                                     *ids)
        assert empty == [[]] * 4
        expected, _ = official_generate(ref, head, images, num_beams, 4, 0.6,
                                        *ids)
        assert max(len(w) for w in expected) == 1
        for use_cache in (True, False):
            assert model.generate(images, num_beams=num_beams, max_len=4,
                                  use_cache=use_cache)[0] == expected
    no_eos = build(spm, max_len=4)
    with torch.no_grad():
        no_eos.mlm_head.bias[EOS] = -100.
    words, _ = no_eos.generate(images_of(3))
    assert [len(w) for w in words] == [1, 1, 1]
    with pytest.raises(ValueError, match='max_len=3.*every caption would be '
                       'empty: set max_len >= 4'):
        no_eos.generate(images_of(3), max_len=3)


def test_cache_encodes_each_image_once(decode_pair, monkeypatch):
    _, _, model = decode_pair
    calls = []
    encode = model.backbone.encode

    def spy(images=None, text_ids=None, **kwargs):
        calls.append((None if images is None else images.shape[0],
                      text_ids.shape))
        return encode(images, text_ids, **kwargs)

    monkeypatch.setattr(model.backbone, 'encode', spy)
    model.generate(images_of(2, seed=5).double(), num_beams=3, max_len=8)
    assert calls[0] == (2, (2, 2))  # each image once, with [<s>, <mask>]
    assert all(n is None and t[1] == 2 for n, t in calls[1:])


def test_cache_api(decode_pair):
    """Text fed to a filled cache gives the outputs of the full sequence
    at the same positions; reorder and drop_last follow."""
    _, _, model = decode_pair
    backbone = model.backbone
    images = images_of(2, seed=1).double()
    ids = torch.tensor([[0, 5, 9, 11, 7, 29], [0, 8, 4, 6, 12, 29]])
    n = 1 + (TINY_IMG // TINY['patch_size'])**2
    with torch.no_grad():
        full = backbone.encode(images, ids,
                               attn_mask=backbone.seq2seq_mask(n, 6))
        cache = KVCache(backbone.num_layers)
        first = backbone.encode(images, ids[:, :3], cache=cache)
        assert (len(cache), cache.num_vision, cache.num_text) == (n + 3, n, 3)
        rest = backbone.encode(text_ids=ids[:, 3:], cache=cache)
        torch.testing.assert_close(first, full[:, :n + 3])
        torch.testing.assert_close(rest, full[:, n + 3:])
        cache.drop_last(3)
        cache.reorder(torch.tensor([1, 1, 0]))
        again = backbone.encode(text_ids=ids[[1, 1, 0], 3:], cache=cache)
        torch.testing.assert_close(again, full[[1, 1, 0], n + 3:])
        # explicit positions: the same tokens one place later differ
        cache.drop_last(3)
        shifted = backbone.encode(text_ids=ids[[1, 1, 0], 3:], cache=cache,
                                  text_positions=torch.arange(4, 7))
        assert not torch.allclose(shifted, again, atol=1e-3)
        with pytest.raises(ValueError, match='no attn_mask'):
            backbone.encode(text_ids=ids, cache=cache,
                            text_padding_mask=torch.zeros_like(ids))
        with pytest.raises(ValueError, match='first call only'):
            backbone.encode(images, ids, cache=cache)
        with pytest.raises(ValueError, match='cannot drop'):
            cache.drop_last(100)


def test_predict_sets_pred_caption(spm):
    """``pred_caption`` is the detokenised best hypothesis (special tokens
    skipped); ``image_id`` stays."""
    model = build(spm, vocab_size=30, num_beams=2, max_len=10)
    samples = [DataSample(image_id=7), DataSample(image_id=3)]
    images = images_of(2)
    words, _ = model.generate(images)
    out = model.predict(images, samples)
    assert [s.image_id for s in out] == [7, 3]
    for s, w in zip(out, words):
        assert isinstance(s.pred_caption, str)
        assert s.pred_caption == model.tokenizer.decode(
            w, skip_special_tokens=True)
    assert any(s.pred_caption for s in out)
    out = model(images, [DataSample(image_id=1), DataSample(image_id=2)],
                mode='predict')
    assert [s.pred_caption for s in out] == [s.pred_caption for s in samples]


def test_pred_caption_skips_special_tokens(spm, monkeypatch):
    model = build(spm)
    tok = model.tokenizer
    words = tok('a red circle')['input_ids'][1:-1]
    special = ([tok.bos_token_id, tok.pad_token_id] + words[:3] +
               [tok.unk_token_id, tok.mask_token_id] + words[3:] +
               [tok.eos_token_id])
    monkeypatch.setattr(model, 'generate', lambda images: ([special], [0.]))
    (sample, ) = model.predict(images_of(1))
    assert sample.pred_caption == 'a red circle'
    assert tok.decode(special) != 'a red circle'


def test_defaults_are_the_recipe(spm):
    """mask_prob 0.6, label smoothing 0.1, the worst 20% dropped after step
    12000, 32 training tokens, beam 3, length penalty 0.6, 64 decoding
    tokens with the cache; mlm_head is Linear(D, 64010) of BEiT3's
    default vocabulary, a BEiT3VLModel."""
    from beit3_mm.models.multimodal.base import BEiT3VLModel
    model = MODELS.build(model_cfg(spm, vocab_size=64010))
    assert isinstance(model, BEiT3VLModel)
    assert (model.mask_prob, model.label_smoothing, model.drop_worst_ratio,
            model.drop_worst_after, model.max_text_len) == (0.6, 0.1, 0.2,
                                                            12000, 32)
    assert (model.num_beams, model.length_penalty, model.max_len,
            model.use_cache) == (3, 0.6, 64, True)
    assert (model.mlm_head.in_features,
            model.mlm_head.out_features) == (TINY['embed_dims'], 64010)


# -------------------------------------------------------------- bad input
def test_bad_input_errors(spm):
    model = build(spm)
    images = images_of(2)
    with pytest.raises(KeyError, match='gt_caption.*PackInputs'):
        model.loss(images, [DataSample(image_id=1)] * 2)
    with pytest.raises(ValueError, match='empty gt_caption.*image_id=4'):
        model.loss(images, [DataSample(gt_caption='a red circle'),
                            DataSample(gt_caption=' ', image_id=4)])
    # a list of captions (one drawn per step) that is empty or holds only
    # empty captions is no caption either
    for captions in ([], [''], ['', '  ']):
        with pytest.raises(ValueError, match='empty gt_caption.*image_id=5'):
            model.loss(images, [DataSample(gt_caption='a red circle'),
                                DataSample(gt_caption=captions, image_id=5)])
    with pytest.raises(ValueError, match='max_len=3.*no room'):
        model.generate(images, max_len=3)
    with pytest.raises(ValueError, match='num_beams=0'):
        model.generate(images, num_beams=0)
    for kwargs, match in ((dict(max_len=2), 'max_len=2'),
                          (dict(num_beams=0), 'num_beams=0')):
        with pytest.raises(ValueError, match=match):
            build(spm, **kwargs)
    cfg = model_cfg(spm)
    cfg['backbone']['output_norm'] = False
    with pytest.raises(ValueError, match='output_norm=True'):
        MODELS.build(cfg)


def test_errors_are_one_line_and_name_the_fix(spm):
    """Each bad input stops with one line that names the thing and the
    fix; a decoding length beyond the text position table stops when the
    model is built, not at the first validation after an epoch."""
    model = build(spm)
    images = images_of(2)
    cases = [
        (lambda: model.loss(images, [DataSample(image_id=1)] * 2),
         'gt_caption', 'PackInputs.algorithm_keys'),
        (lambda: model.loss(images, [DataSample(gt_caption=[], image_id=3)]
                            * 2), 'empty gt_caption', 'remove it'),
        (lambda: model.corrupt(*padded_ids([5, 2], 6)),
         'captions [1] of the batch have no token', 'remove them'),
        (lambda: model.generate(images, max_len=3), 'max_len=3',
         'set max_len >= 4'),
        (lambda: model.generate(images, num_beams=0), 'num_beams=0',
         '1 for greedy'),
        (lambda: build(spm, max_len=1024), 'max_len=1024',
         'num_text_positions >= 1025'),
        (lambda: model.generate(images, max_len=2000), 'max_len=2000',
         'set max_len <= 1023'),
    ]
    cfg = model_cfg(spm, max_len=40)
    cfg['backbone']['num_text_positions'] = 34
    cases.append((lambda: MODELS.build(cfg), 'max_len=40 needs 41',
                  'set max_len <= 33'))
    for call, what, fix in cases:
        with pytest.raises((KeyError, ValueError)) as err:
            call()
        message = str(err.value).strip("'")
        assert what in message and fix in message, message
        assert '\n' not in message, message
    # at the bound it decodes
    cfg['max_len'] = 33
    words, _ = MODELS.build(cfg).eval().generate(images_of(1), num_beams=1)
    assert len(words[0]) <= 30


# ----------------------------------------------------------------- configs
CFG_DIR = osp.join(ROOT, 'configs/beit3/captioning')
COCO_CFG = osp.join(CFG_DIR, 'beit3-base-p16_caption_8xb32-10e_coco-480px.py')
NOCAPS_CFG = osp.join(CFG_DIR,
                      'beit3-base-p16_caption_8xb32-10e_nocaps-480px.py')
DEMO_CFG = osp.join(CFG_DIR, 'beit3-tiny-p8_caption_1xb32-12e_demo-vl.py')
RECIPES = [
    (COCO_CFG, 'base', 4e-5),
    (COCO_CFG.replace('base', 'large'), 'large', 8e-6),
    (NOCAPS_CFG, 'base', 1e-5),
    (NOCAPS_CFG.replace('base', 'large'), 'large', 8e-6),
]


@pytest.mark.parametrize('path,arch,lr', RECIPES)
def test_recipe_configs(path, arch, lr):
    """The official recipe: from the pretraining file at 480, 8 x 32,
    AdamW (0.9, 0.999), weight decay 0.05, no layer decay, 10 epochs with 1
    warm-up from 1e-6, drop path 0.1, label smoothing 0.1, 32 tokens in
    training, beam 3 / length penalty 0.6 / 64 tokens in decoding; VQAv2's
    pre-processing at 480 (the same RandAugment) with captions packed; the
    best checkpoint kept by CIDEr."""
    cfg = Config.fromfile(path)
    model = cfg.model
    assert model.type == 'BEiT3Caption' and model.backbone.arch == arch
    assert model.backbone.img_size == 480
    assert model.backbone.drop_path_rate == 0.1
    assert model.backbone.output_norm is True and model.backbone.with_cp
    assert model.init_cfg.checkpoint.endswith(f'beit3_{arch}_patch16_224.pth')
    assert (model.max_text_len, model.mask_prob, model.label_smoothing,
            model.drop_worst_ratio, model.drop_worst_after) == (32, 0.6, 0.1,
                                                                0.2, 12000)
    assert (model.num_beams, model.length_penalty, model.max_len) == (3, 0.6,
                                                                      64)
    assert cfg.data_preprocessor.mean == cfg.data_preprocessor.std == [
        127.5
    ] * 3
    optim = cfg.optim_wrapper
    assert optim.type == 'AmpOptimWrapper' and optim.optimizer.lr == lr
    assert optim.optimizer.betas == (0.9, 0.999)
    assert optim.optimizer.weight_decay == 0.05
    assert optim.paramwise_cfg == dict(layer_decay_rate=1.0)
    warmup, cosine = cfg.param_scheduler
    assert warmup.start_factor * lr == pytest.approx(1e-6)
    assert (warmup.end, cosine.begin, cosine.end) == (1, 1, 10)
    assert cfg.train_cfg.max_epochs == 10
    assert cfg.train_dataloader.batch_size * 8 == 256
    assert cfg.auto_scale_lr.base_batch_size == 256

    vqa = Config.fromfile(
        osp.join(ROOT, 'configs/_base_/datasets/vqav2_480px.py'))
    assert [t.type for t in cfg.train_pipeline] == [
        'LoadImageFromFile', 'RandomResizedCrop', 'RandomFlip',
        'RandAugment', 'PackInputs'
    ]
    assert cfg.train_pipeline[:-1] == vqa.train_pipeline[:-1]
    crop, randaug = cfg.train_pipeline[1], cfg.train_pipeline[3]
    assert crop.scale == 480 and crop.crop_ratio_range == (0.5, 1.0)
    assert crop.interpolation == 'bicubic'
    assert (randaug.num_policies, randaug.magnitude_level) == (2, 7)
    assert len(randaug.policies) == 10
    assert cfg.train_pipeline[-1].algorithm_keys == ['gt_caption']
    assert cfg.test_pipeline[1] == dict(type='Resize', scale=(480, 480),
                                        interpolation='bicubic',
                                        backend='pillow')
    assert cfg.test_pipeline[-1] == dict(type='PackInputs',
                                         meta_keys=['image_id'])
    train = cfg.train_dataloader.dataset
    assert train.type == 'COCOCaption'
    assert train.ann_file == 'annotations/coco_karpathy_train.json'
    assert cfg.train_dataloader.collate_fn.type == 'default_collate'

    checkpoint = cfg.default_hooks.checkpoint
    assert checkpoint.rule == 'greater'
    if 'nocaps' in path:
        assert checkpoint.save_best == 'nocaps/CIDEr'
        assert cfg.val_dataloader.dataset.type == 'NoCapsImages'
        assert cfg.test_dataloader.dataset.type == 'NoCapsImages'
        assert cfg.val_evaluator.type == 'NoCapsMetric'
        assert cfg.test_evaluator.format_only
    else:
        assert checkpoint.save_best == 'coco-caption/CIDEr'
        assert cfg.val_dataloader.dataset.ann_file.endswith('_val.json')
        assert cfg.test_dataloader.dataset.ann_file.endswith('_test.json')
        assert cfg.val_evaluator == dict(
            type='CaptionMetric',
            ann_file='data/coco/annotations/coco_karpathy_val_gt.json')
        assert cfg.test_evaluator.ann_file.endswith('_test_gt.json')


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    """A small VL demo set (LAVIS caption files, COCO-format ground
    truth); its tokenizer stands in for beit3.spm."""
    root = str(tmp_path_factory.mktemp('demo_vl'))
    files = make_vl_demo(root, num_train=4, num_val=3, num_train_pairs=2,
                         num_val_pairs=2, questions_per_image=1)
    return root, files


def _loader(cfg_loader, dataset, batch_size=2):
    from mmengine.runner import Runner
    return Runner.build_dataloader(
        dict(cfg_loader, dataset=dataset, batch_size=batch_size,
             num_workers=0, persistent_workers=False))


def _nocaps_files(root, files):
    """The demo val set as NoCaps val / test files (images with a
    domain; test without captions)."""
    with open(osp.join(root, files['captions_val'])) as f:
        val = json.load(f)
    domains = ('in-domain', 'near-domain', 'out-domain')
    for i, img in enumerate(val['images']):
        img.update(domain=domains[i % 3], file_name='val/' + img['file_name'])
    paths = {}
    for split, content in (('val', val), ('test', dict(images=val['images']))):
        paths[split] = osp.join(root, f'nocaps_{split}.json')
        with open(paths[split], 'w') as f:
            json.dump(content, f)
    return paths


@pytest.mark.parametrize('path', [COCO_CFG, NOCAPS_CFG])
def test_recipe_trains_and_predicts(path, demo, tmp_path):
    """Each recipe's pipelines, collate, preprocessor, model, optimizer and
    evaluators (tiny arch, patch 16, CPU): a loss step on COCOCaption
    samples, then validation and test on the recipe's datasets (COCOCaption
    / NoCapsImages) scored by its metric (a submission file for NoCaps
    test)."""
    from mmengine.registry import init_default_scope

    from beit3_mm.registry import DATASETS, METRICS
    init_default_scope('mmpretrain')
    root, files = demo
    cfg = Config.fromfile(path)
    cfg.model.backbone.arch = dict(TINY, patch_size=16)
    cfg.model.backbone.vocab_size = VOCAB
    cfg.model.backbone.with_cp = False
    cfg.model.tokenizer.name_or_path = osp.join(root, files['tokenizer'])
    cfg.model.init_cfg = None
    model = build_model(cfg)
    model.init_weights()
    wrapper = plain_optim_wrapper(model, cfg)

    train = _loader(cfg.train_dataloader, dict(
        cfg.train_dataloader.dataset, data_root=root,
        data_prefix=dict(img_path='images')))
    data = next(iter(train))
    assert data['inputs'].shape == (2, 3, 480, 480)
    assert all(isinstance(s.gt_caption, str) for s in data['data_samples'])
    before = model.mlm_head.weight.clone()
    losses = model.train_step(data, wrapper)
    assert torch.isfinite(losses['loss']) and losses['loss'] > 0
    assert not torch.equal(before, model.mlm_head.weight)

    with torch.no_grad():
        # no </s>: a caption that is never empty; the ids beyond the demo
        # tokenizer's (the backbone has VOCAB rows) most likely, and never
        # chosen
        model.mlm_head.bias[EOS] = -100.
        model.mlm_head.bias[len(model.tokenizer):] = 100.
    if 'nocaps' in path:
        ann = _nocaps_files(root, files)
        val_set = dict(cfg.val_dataloader.dataset, data_root=root,
                       data_prefix=dict(img_path='images'),
                       ann_file=ann['val'])
        test_set = dict(cfg.test_dataloader.dataset, data_root=root,
                        data_prefix=dict(img_path='images'),
                        ann_file=ann['test'])
        val_metric = dict(cfg.val_evaluator, ann_file=ann['val'])
        prefix = str(tmp_path / 'nocaps_test')
        test_metric = dict(cfg.test_evaluator, outfile_prefix=prefix)
    else:
        val_set = dict(cfg.val_dataloader.dataset, data_root=root,
                       data_prefix=dict(img_path='images'),
                       ann_file=files['lavis_val'])
        test_set = val_set
        val_metric = test_metric = dict(
            cfg.val_evaluator, ann_file=osp.join(root, files['captions_val']))
    assert len(DATASETS.build(val_set)) == 3  # one sample per image
    for dataset, metric_cfg in ((val_set, val_metric),
                                (test_set, test_metric)):
        metric = METRICS.build(metric_cfg)
        for batch in _loader(cfg.val_dataloader, dataset):
            preds = model.val_step(batch)
            assert all(p.pred_caption.strip() for p in preds)
            metric.process(batch, [p.to_dict() for p in preds])
        scores = metric.evaluate(3)
        if metric_cfg.get('format_only'):
            assert scores == {}
            with open(prefix + '.caption.json') as f:
                assert len(json.load(f)) == 3
        else:
            name = 'nocaps' if 'nocaps' in path else 'coco-caption'
            assert 0 <= scores[f'{name}/CIDEr'] and f'{name}/Bleu_4' in scores
            if 'nocaps' in path:
                assert f'{name}/out-domain_CIDEr' in scores


def test_image_caption_inferencer(demo, tmp_path):
    """mmpretrain's ImageCaptionInferencer takes the demo config and a
    checkpoint and returns the model's caption."""
    from mmpretrain import ImageCaptionInferencer
    root, files = demo
    cfg = Config.fromfile(DEMO_CFG)
    cfg.model.tokenizer.name_or_path = osp.join(root, files['tokenizer'])
    model = build_model(cfg).eval()
    randomize_(model, seed=3)
    with torch.no_grad():  # no </s>; ids the tokenizer lacks never chosen
        model.mlm_head.bias[EOS] = -100.
        model.mlm_head.bias[len(model.tokenizer):] = 100.
    ckpt = str(tmp_path / 'demo.pth')
    torch.save(dict(state_dict=model.state_dict(), meta={}), ckpt)
    inferencer = ImageCaptionInferencer(model=cfg, pretrained=ckpt,
                                        device='cpu')
    image = osp.join(root, 'images/val/000000000005.png')
    (result, ) = inferencer(image)
    sample = inferencer(image, return_datasamples=True)[0]
    assert result['pred_caption'] == sample.pred_caption
    assert result['pred_caption'].strip()
    # the inferencer's pipeline (square resize to 64) and the model's
    # decode of the same pixels agree
    from mmcv import imread
    img = torch.from_numpy(imread(image)).permute(2, 0, 1)  # BGR, as read
    images = model.data_preprocessor(
        dict(inputs=img[None].float(), data_samples=None))['images']
    words, _ = model.generate(images)
    assert result['pred_caption'] == model.tokenizer.decode(
        words[0], skip_special_tokens=True)


def test_benchmark_caption_mode(tmp_path):
    """``benchmark.py --modes caption`` decodes exactly --caption-len words
    with and without the cache (same tokens) and reports both."""
    from helpers import run_tool
    out = run_tool(
        osp.join(ROOT, 'tools/analysis_tools/benchmark.py'), '--modes',
        'caption', '--caption-img-sizes', '32', '--caption-len', '3',
        '--batch-size', '2', '--iters', '1', '--warmup', '0', '--device',
        'cpu', cwd=tmp_path)
    rows = [line for line in out.splitlines()
            if line.startswith('caption @32 beam 3 cached vs uncached')]
    assert [r.split()[7] for r in rows] == ['captions/s', 'tokens/s', 'MiB']
    assert 'same tokens' in rows[0]
