"""corrupt_tokens, the BERT corruption shared by pretraining and captioning:
exact counts, eligibility, 80/10/10, a fixed amount of random numbers, bad
counts, and both callers going through it with their own count rule."""
import pytest
import torch
from helpers import TINY, TINY_IMG, VOCAB, padded_ids

import beit3_mm  # noqa: F401
from beit3_mm.demo.shapes import train_demo_tokenizer
from beit3_mm.models.multimodal import beit3_caption
from beit3_mm.models.selfsup import masking, mask_text_tokens
from beit3_mm.models.utils import corrupt_tokens
from beit3_mm.registry import MODELS

MASK = 99


def random_eligibility(B, M, seed=0):
    """Ids, a scattered (non-contiguous) eligibility and counts from 0 to
    all eligible positions."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 50, (B, M), generator=g)
    eligible = torch.rand(B, M, generator=g) < 0.5
    n = eligible.sum(1)
    counts = (torch.rand(B, generator=g) * (n + 1)).long()
    return ids, eligible, counts


def test_exact_counts_and_only_eligible_positions():
    torch.manual_seed(0)
    ids, eligible, counts = random_eligibility(300, 17)
    assert counts.min() == 0 and (counts == eligible.sum(1)).any()
    for _ in range(5):
        new, chosen = corrupt_tokens(ids, eligible, counts, MASK, (3, 60))
        assert torch.equal(chosen.sum(1), counts)
        assert not (chosen & ~eligible).any()
        assert torch.equal(new[~chosen], ids[~chosen])
        assert new.dtype == ids.dtype and chosen.dtype == torch.bool


def test_80_10_10_and_uniform_subset():
    """80% mask id, 10% a random id in [low, high] (both bounds drawn),
    10% kept; every eligible position equally likely."""
    torch.manual_seed(1)
    B, M = 20000, 10
    ids = torch.randint(100, 200, (B, M))  # never equal to a random id
    eligible = torch.ones(B, M, dtype=torch.bool)
    eligible[:, 0] = eligible[:, -2:] = False
    counts = torch.full((B, ), 3)
    new, chosen = corrupt_tokens(ids, eligible, counts, MASK, (3, 6))
    picked, orig = new[chosen], ids[chosen]
    share = lambda m: m.float().mean().item()  # noqa: E731
    assert abs(share(picked == MASK) - 0.8) < 0.01
    assert abs(share(picked == orig) - 0.1) < 0.01
    random_ids = picked[(picked != MASK) & (picked != orig)]
    assert abs(random_ids.numel() / picked.numel() - 0.1) < 0.01
    assert sorted(set(random_ids.tolist())) == [3, 4, 5, 6]
    rate = chosen.float().mean(0)
    assert torch.equal(rate[~eligible[0]], torch.zeros(3))
    torch.testing.assert_close(rate[eligible[0]], torch.full((7, ), 3 / 7),
                               rtol=0, atol=0.015)


def test_fixed_random_consumption():
    """The same amount of random numbers whatever the counts and the
    eligibility (a resumed run draws the same masks)."""
    ids, eligible, counts = random_eligibility(8, 12)
    states = []
    for elig, cnt in ((eligible, counts), (eligible, counts * 0),
                      (torch.ones_like(eligible), torch.full((8, ), 12))):
        torch.manual_seed(3)
        corrupt_tokens(ids, elig, cnt, MASK, (3, 60))
        states.append(torch.get_rng_state())
    assert all(torch.equal(states[0], s) for s in states[1:])


def test_bad_counts():
    ids, eligible, counts = random_eligibility(4, 6)
    too_many = counts.clone()
    too_many[2] = eligible[2].sum() + 1
    for bad in (too_many, counts - counts.max() - 1):
        with pytest.raises(ValueError, match=r'row \d asks for .*give counts '
                           r'in \[0, eligible.sum\(1\)\]') as err:
            corrupt_tokens(ids, eligible, bad, MASK, (3, 60))
        assert '\n' not in str(err.value)


@pytest.fixture
def spy(monkeypatch):
    """Record the calls of corrupt_tokens from both callers."""
    calls = []

    def record(*args):
        calls.append(args)
        return corrupt_tokens(*args)

    monkeypatch.setattr(masking, 'corrupt_tokens', record)
    monkeypatch.setattr(beit3_caption, 'corrupt_tokens', record)
    return calls


def test_pretraining_goes_through_it(spy):
    """mask_text_tokens: max(1, int(n * ratio + 0.5)) of the n maskable
    positions, at most n."""
    ids, maskable, _ = random_eligibility(50, 9)
    maskable[0] = False
    torch.manual_seed(4)
    out = mask_text_tokens(ids, maskable, 0.15, MASK, (3, 60))
    (args, ) = spy
    n = maskable.sum(1).tolist()
    assert args[2].tolist() == [min(max(1, int(k * 0.15 + 0.5)), k)
                                for k in n]
    assert args[1] is maskable and args[3:] == (MASK, (3, 60))
    torch.manual_seed(4)
    expected = corrupt_tokens(ids, maskable, args[2], MASK, (3, 60))
    assert all(torch.equal(a, b) for a, b in zip(out, expected))


def test_captioning_goes_through_it(spy, tmp_path):
    """BEiT3Caption.corrupt: clip(int(n * p + 0.5), 1, n - 1) of the
    positions 1..n-1 (in float64, as the official Python: 45 tokens at
    p = 0.7 give 31, not 32), random ids from [3, vocab_size - 1]."""
    spm = train_demo_tokenizer(
        [f'a {c} {s} on the left' for c in ('red', 'blue', 'green')
         for s in ('circle', 'square', 'triangle')],
        str(tmp_path / 'tok.spm'), vocab_size=30)
    model = MODELS.build(dict(
        type='BEiT3Caption', mask_prob=0.7,
        backbone=dict(type='BEiT3', arch=TINY, img_size=TINY_IMG,
                      vocab_size=VOCAB, output_norm=True),
        tokenizer=dict(type='BEiT3Tokenizer', name_or_path=spm)))
    lengths = [3, 4, 5, 12, 45]
    ids, pad = padded_ids(lengths, 48)
    model.corrupt(ids, pad)
    (args, ) = spy
    assert args[2].tolist() == [min(max(int(n * 0.7 + 0.5), 1), n - 1)
                                for n in lengths] == [2, 3, 4, 8, 31]
    positions = torch.arange(48)
    eligible = (positions > 0) & (positions < torch.tensor(lengths)[:, None])
    assert torch.equal(args[1], eligible)
    assert args[3:] == (model.tokenizer.mask_token_id,
                        (3, model.tokenizer.vocab_size - 1))
