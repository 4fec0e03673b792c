"""BEiT-3 pretraining (issue 12, 2): the model, its masks and its losses."""
import glob
import math
import os
import os.path as osp
import random
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import (ROOT, TINY, TINY_IMG, VOCAB, official_vqkd_state,
                     pretrain_heads, save_released, torchscale_beit3)
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import MODELS
from mmpretrain.structures import DataSample

import beit3_mm  # noqa: F401
from beit3_mm.demo.shapes import train_demo_tokenizer
from beit3_mm.models.selfsup import (BEiT3Pretrain, BlockMaskGenerator,
                                     mask_text_tokens)
from beit3_mm.models.selfsup.beit3_pretrain import LOCKSTEP_GRAPH
from beit3_mm.models.utils import is_language_key

CODE_DIMS = 8
WORDS = ('red green blue circle square triangle big small left right above '
         'below the a is of and two one').split()


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """A tiny sentencepiece tokenizer and released-layout VQ-KD files with
    64 and 8192 codes."""
    root = tmp_path_factory.mktemp('pretrain')
    rng = random.Random(0)
    sentences = [' '.join(rng.choice(WORDS) for _ in range(8))
                 for _ in range(300)]
    out = dict(spm=train_demo_tokenizer(sentences, str(root / 't.spm'),
                                        vocab_size=40))
    for codes in (64, 8192):
        out[f'vqkd{codes}'] = str(root / f'vqkd{codes}.pth')
        out[f'state{codes}'] = official_vqkd_state(TINY, TINY_IMG, codes,
                                                   CODE_DIMS, seed=codes)
        torch.save({'model': out[f'state{codes}']}, out[f'vqkd{codes}'])
    return out


def build(files, codes: int = 64, init: bool = True,
          **kwargs) -> BEiT3Pretrain:
    cfg = dict(
        type='BEiT3Pretrain',
        backbone=dict(arch=TINY, img_size=TINY_IMG, vocab_size=VOCAB),
        target_generator=dict(
            type='VQKDTokenizer', arch=TINY, img_size=TINY_IMG,
            num_embed=codes, embed_dims=CODE_DIMS,
            init_cfg=dict(type='Pretrained',
                          checkpoint=files[f'vqkd{codes}'])),
        tokenizer=dict(type='BEiT3Tokenizer', name_or_path=files['spm']),
        max_text_len=16,
        mask_min_num_patches=4)
    cfg.update(kwargs)
    model = MODELS.build(cfg)
    if init:
        model.init_weights()
    return model


def pixels(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, TINY_IMG, TINY_IMG), generator=g,
                         dtype=torch.uint8)


def batch(sources: str, seed: int = 0) -> dict:
    """A collated batch (mmengine's pseudo_collate layout) with the given
    sources in order, e.g. 'itp': image, text, pair."""
    px = pixels(len(sources), seed)
    rng = random.Random(seed)
    inputs, samples = [], []
    for i, kind in enumerate(sources):
        words = ' '.join(rng.choice(WORDS) for _ in range(rng.randint(2, 9)))
        if kind == 'i':
            inputs.append(px[i])
            samples.append(DataSample(source='image'))
        elif kind == 't':
            inputs.append(None)
            samples.append(DataSample(source='text', text=words))
        elif kind == 'k':  # a text corpus line, packed ids
            inputs.append(None)
            samples.append(DataSample(
                source='text', text_ids=[0] + [rng.randint(4, 40)
                                               for _ in range(13)] + [2]))
        else:
            inputs.append(px[i])
            samples.append(DataSample(source='pair', text=words))
    return dict(inputs=inputs, data_samples=samples)


# ------------------------------------------------------------ image masks
def official_block_mask(gen: BlockMaskGenerator, draws) -> np.ndarray:
    """unilm/beit ``MaskingGenerator.__call__`` written out as there, with
    ``random.uniform`` / ``random.randint`` read from ``draws`` (A, 4)."""
    it = iter(draws.tolist())
    H, W = gen.height, gen.width
    mask = np.zeros((H, W), dtype=int)

    def _mask(max_mask_patches):
        delta = 0
        for _ in range(10):
            u = next(it)
            a, b = gen.min_num_patches, max_mask_patches
            target_area = a + (b - a) * u[0]
            lo, hi = gen.log_aspect_ratio
            aspect_ratio = math.exp(lo + (hi - lo) * u[1])
            h = int(round(math.sqrt(target_area * aspect_ratio)))
            w = int(round(math.sqrt(target_area / aspect_ratio)))
            if w < W and h < H:
                top = int(u[2] * (H - h + 1))  # randint(0, H - h)
                left = int(u[3] * (W - w + 1))
                num_masked = mask[top:top + h, left:left + w].sum()
                if 0 < h * w - num_masked <= max_mask_patches:
                    for i in range(top, top + h):
                        for j in range(left, left + w):
                            if mask[i, j] == 0:
                                mask[i, j] = 1
                                delta += 1
            if delta > 0:
                break
        return delta

    mask_count = 0
    try:
        while mask_count < gen.num_masking_patches:
            max_mask_patches = min(gen.num_masking_patches - mask_count,
                                   gen.max_num_patches)
            delta = _mask(max_mask_patches)
            if delta == 0:
                break
            mask_count += delta
    except StopIteration:  # our attempt budget
        pass
    return mask.astype(bool)


def test_block_masks_are_beits_filled_to_the_exact_count():
    """At 224/16 every mask holds exactly 78 of 196 patches; its blocks
    are the official generator's for the same random numbers, the fill
    only adds patches next to them, and the random numbers come from
    torch's global generator."""
    gen = BlockMaskGenerator(14, 0.4, min_num_patches=16)
    assert gen.num_masking_patches == 78
    torch.manual_seed(3)
    masks = gen(200).view(200, 14, 14)
    torch.manual_seed(3)
    draws = torch.rand(200, gen.max_attempts, 4)
    assert (masks.sum((1, 2)) == 78).all()
    short = 0
    for mask, d in zip(masks.numpy(), draws):
        blocks = official_block_mask(gen, d)
        assert (mask >= blocks).all()
        short += int(blocks.sum() < 78)
        # the fill grows the blocks: its patches touch masked ones
        padded = np.pad(mask, 1)
        near = (padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2]
                | padded[1:-1, 2:])
        assert near[mask & ~blocks].all()
    assert 0 < short < 200  # the official generator stops short at times
    torch.manual_seed(3)
    assert torch.equal(gen(200).view(200, 14, 14), masks)


def test_block_shapes_follow_the_aspect_and_size_bounds():
    """Without fill (count reached by one block), the mask is one h x w
    block of at least ``min_num_patches`` with h / w within the aspect
    bounds (up to rounding)."""
    gen = BlockMaskGenerator(20, 0.04, min_num_patches=16, min_aspect=0.5)
    torch.manual_seed(0)
    single = 0
    for mask in gen(100).view(100, 20, 20):
        rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
        h = int(rows.max() - rows.min() + 1)
        w = int(cols.max() - cols.min() + 1)
        assert int(mask.sum()) == 16
        if h * w == 16:  # one block (else blocks plus fill)
            single += 1
            assert 0.5 / 1.5 <= h / w <= 2 * 1.5
    assert single > 20


@pytest.mark.parametrize('grid', [1, 2, (3, 5), 14])
@pytest.mark.parametrize('ratio', [0., 0.4, 1.])
def test_block_masks_end_on_any_grid(grid, ratio):
    """Tiny grids and ratios 0 and 1 end with the exact count, or (a
    positive ratio that masks no patch) stop with a clear error."""
    h, w = (grid, grid) if isinstance(grid, int) else grid
    count = int(ratio * h * w + 0.5)
    if ratio > 0 and count == 0:
        with pytest.raises(ValueError, match='masks no patch of a 1x1'):
            BlockMaskGenerator(grid, ratio)
        return
    masks = BlockMaskGenerator(grid, ratio, min_num_patches=16)(5)
    assert masks.shape == (5, h * w) and masks.dtype == torch.bool
    assert (masks.sum(1) == count).all()


@pytest.mark.parametrize('kwargs, match', [
    (dict(mask_ratio=1.2), r'mask_ratio=1.2 must be in \[0, 1\]'),
    (dict(mask_ratio=-0.1), r'must be in \[0, 1\]'),
    (dict(mask_ratio=0.4, min_aspect=0.), 'must be positive'),
    (dict(mask_ratio=0.4, min_num_patches=0), 'min_num_patches=0'),
])
def test_block_mask_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BlockMaskGenerator(14, **kwargs)


def test_aspect_bounds_in_either_order():
    """``min_aspect`` > 1 works as the official (random.uniform takes its
    bounds in either order)."""
    gen = BlockMaskGenerator(14, 0.4, min_aspect=2.)
    assert gen.log_aspect_ratio == (math.log(.5), math.log(2.))
    assert (gen(3).sum(1) == 78).all()


# ------------------------------------------------------------- text masks
def test_text_masking_rules_and_statistics():
    """Exactly max(1, int(0.15 n + 0.5)) of the n maskable tokens per text,
    never a special token or padding, uniformly; 80% <mask>, 10% random
    ids in [3, 64001], 10% kept."""
    torch.manual_seed(0)
    B, M = 4000, 40
    ids = torch.randint(4, 64001, (B, M))
    lengths = torch.randint(3, M + 1, (B, ))
    pad = torch.arange(M)[None] >= lengths[:, None]
    ids[pad] = 1
    ids[:, 0] = 0
    ids[torch.arange(B), lengths - 1] = 2
    ids[:, 5] = torch.where(pad[:, 5], 1, 3)  # an <unk> among the words
    maskable = (ids > 3) & ~pad
    new, chosen = mask_text_tokens(ids, maskable, 0.15, 64001, (3, 64001))
    assert torch.equal(mask_text_tokens(ids[:1], maskable[:1] & False, 0.15,
                                        64001, (3, 64001))[0], ids[:1])
    n = maskable.sum(1)
    expected = torch.minimum((n * 0.15 + 0.5).long().clamp(min=1), n)
    assert torch.equal(chosen.sum(1), expected)
    assert not (chosen & ~maskable).any()
    assert torch.equal(new[~chosen], ids[~chosen])
    picked, orig = new[chosen], ids[chosen]
    total = picked.numel()
    share_mask = (picked == 64001).float().mean().item()
    kept = (picked == orig).float().mean().item()
    assert abs(share_mask - 0.8) < 0.02
    assert abs(kept - 0.1) < 0.015  # a random id equals the word ~never
    other = picked[(picked != 64001) & (picked != orig)]
    assert abs(other.numel() / total - 0.1) < 0.015
    assert other.min() >= 3 and other.max() <= 64001
    assert other.float().std() > 15000  # spread over the vocabulary
    # a uniform subset: every maskable position of full texts alike
    _, chosen = mask_text_tokens(ids, torch.ones_like(maskable), 0.15,
                                 64001, (3, 64001))
    rate = chosen.float().mean(0)
    assert (chosen.sum(1) == 6).all()
    assert ((rate - 6 / 40).abs() < 0.03).all()


def test_model_masks_no_special_token_nor_padding(files):
    """The model's corruption of tokenised texts and packed ids keeps <s>,
    </s>, <unk>, <pad> and the padding; an empty text is refused."""
    model = build(files)
    data = batch('ttkkt')
    ids, pad = model.text_batch(data['data_samples'])
    assert ids.shape == (5, 16)
    assert torch.equal(pad, (ids == 1).long())
    assert torch.equal(ids[2], torch.tensor(
        data['data_samples'][2].text_ids + [1]))
    special = torch.tensor(model.special_ids)
    assert {0, 1, 2, 3, model.tokenizer.mask_token_id} <= set(
        model.special_ids)
    for seed in range(20):
        torch.manual_seed(seed)
        new, chosen = model.corrupt_text(ids, pad, 0.5, 'text')
        assert not (chosen & torch.isin(ids, special)).any()
        assert not (chosen & pad.bool()).any()
        assert torch.equal(new[~chosen], ids[~chosen])
    empty = [DataSample(source='text', text='')]
    ids, pad = model.text_batch(empty)
    with pytest.raises(ValueError, match=r"'text' samples \[0\] of the "
                       r'batch have no token to mask'):
        model.corrupt_text(ids, pad, 0.15, 'text')
    too_long = [DataSample(source='text', text_ids=list(range(17)))]
    with pytest.raises(ValueError, match='max_text_len=16'):
        model.text_batch(too_long)


# ---------------------------------------------------------------- weights
def test_released_pretraining_file_loads_strictly(tmp_path, files):
    """A file in the layout of beit3_base_patch16_224.pth (beit3.*,
    mim_head over 8192 codes, mlm_head) fills every tensor of the model,
    and the model holds nothing else (the tokenizer is not in its state)."""
    ref = torchscale_beit3(TINY, TINY_IMG, VOCAB)
    heads = pretrain_heads(TINY['embed_dims'])
    path = save_released(tmp_path / 'pretrain.pth', ref.state_dict(), heads)
    model = build(files, codes=8192,
                  init_cfg=dict(type='Pretrained', checkpoint=path))
    lines = model.load_pretrained(path)
    assert not any('not in the file' in s or 'left out' in s for s in lines)
    file = {('backbone.' + k): v for k, v in ref.state_dict().items()}
    file.update(heads)
    state = model.state_dict()
    assert set(state) == set(file)
    for k, v in file.items():
        assert torch.equal(state[k], v), k


def test_reinit_mim_head(tmp_path, files):
    """Another codebook: refused without reinit_mim_head, with it
    mim_head starts anew and the rest loads; same codebook size: the
    released mim_head is replaced too."""
    ref = torchscale_beit3(TINY, TINY_IMG, VOCAB)
    heads = pretrain_heads(TINY['embed_dims'])
    path = save_released(tmp_path / 'pretrain.pth', ref.state_dict(), heads)
    ckpt = dict(type='Pretrained', checkpoint=path)
    with pytest.raises(ValueError, match='reinit_mim_head=True'):
        build(files, codes=64, init_cfg=ckpt)
    for codes in (64, 8192):
        model = build(files, codes=codes, init_cfg=ckpt,
                      reinit_mim_head=True)
        weight = model.mim_head.weight
        assert weight.shape == (codes, TINY['embed_dims'])
        assert 0.015 < weight.std() < 0.025
        assert not model.mim_head.bias.any()
        torch.testing.assert_close(model.mlm_head.weight,
                                   heads['mlm_head.weight'], rtol=0, atol=0)
        torch.testing.assert_close(model.backbone.text_embed.weight,
                                   ref.text_embed.weight, rtol=0, atol=0)


def test_checkpoint_initialises_downstream_models(tmp_path, files):
    """A pretraining checkpoint (mmengine layout) initialises a vision-only
    backbone and a captioning model through the released-file loaders."""
    from beit3_mm.models.utils import load_beit3_checkpoint
    model = build(files)
    path = str(tmp_path / 'iter_1.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    backbone = MODELS.build(dict(type='BEiT3', arch=TINY, img_size=TINY_IMG,
                                 with_language=False))
    load_beit3_checkpoint(backbone, path)
    assert torch.equal(backbone.vision_embed.proj.weight,
                       model.backbone.vision_embed.proj.weight)
    caption = MODELS.build(dict(
        type='BEiT3Caption',
        backbone=dict(type='BEiT3', arch=TINY, img_size=TINY_IMG,
                      vocab_size=VOCAB, output_norm=True),
        tokenizer=dict(type='BEiT3Tokenizer', name_or_path=files['spm']),
        init_cfg=dict(type='Pretrained', checkpoint=path)))
    caption.init_weights()
    assert torch.equal(caption.mlm_head.weight, model.mlm_head.weight)
    assert torch.equal(caption.backbone.encoder.layer_norm.B.weight,
                       model.backbone.encoder.layer_norm.B.weight)


def test_backbone_must_keep_output_norm_and_mask_token(files):
    for key in ('output_norm', 'train_mask_token'):
        with pytest.raises(ValueError, match='output_norm=True'):
            build(files, init=False, backbone=dict(
                arch=TINY, img_size=TINY_IMG, vocab_size=VOCAB,
                **{key: False}))
    with pytest.raises(ValueError, match='frozen VQKDTokenizer'):
        build(files, init=False, target_generator=dict(
            type='VQKDTokenizer', arch=TINY, img_size=TINY_IMG, num_embed=64,
            embed_dims=CODE_DIMS, frozen=False))
    with pytest.raises(ValueError, match='masks no patch'):
        build(files, init=False, image_mask_ratio=0.01)


# ------------------------------------------------------------------ losses
def test_loss_is_masked_data_modeling_of_the_official_model(tmp_path, files,
                                                            monkeypatch):
    """Each loss is the cross-entropy, at the masked patches / chosen
    tokens, of the official (torchscale) BEiT-3 with the released heads,
    fed the masked inputs; the image targets are the tokenizer's codes of
    ``pixel / 127.5 - 1``."""
    ref = torchscale_beit3(TINY, TINY_IMG, VOCAB)
    heads = pretrain_heads(TINY['embed_dims'])
    path = save_released(tmp_path / 'pretrain.pth', ref.state_dict(), heads)
    model = build(files, codes=8192,
                  init_cfg=dict(type='Pretrained', checkpoint=path)).eval()
    drawn = dict(image=[], text=[])
    gen_call, text_fn = BlockMaskGenerator.__call__, mask_text_tokens

    def record_image(gen, n):
        drawn['image'].append(gen_call(gen, n))
        return drawn['image'][-1]

    def record_text(*args):
        drawn['text'].append(text_fn(*args))
        return drawn['text'][-1]

    monkeypatch.setattr(BlockMaskGenerator, '__call__', record_image)
    monkeypatch.setattr(
        'beit3_mm.models.selfsup.beit3_pretrain.mask_text_tokens',
        record_text)
    data = batch('itpipkt')
    samples = data['data_samples']
    with torch.no_grad():
        losses = model(**model.data_preprocessor(data), mode='loss')

    px = torch.stack([x for x in data['inputs'] if x is not None])
    rgb = px.flip(1).float() / 127.5 - 1  # to_rgb, mean = std = 127.5
    codes = model.target_generator.get_codebook_indices(rgb)
    image_rows, pair_rows = [0, 2], [1, 3]

    def ce(head, x, labels):
        logits = F.linear(x, heads[f'{head}.weight'], heads[f'{head}.bias'])
        return (F.cross_entropy(logits, labels),
                (logits.argmax(-1) == labels).float().mean())

    (mim_mask, pair_mask) = drawn['image']
    (text_new, text_chosen), (pair_new, pair_chosen) = drawn['text']
    with torch.no_grad():
        x = ref(visual_tokens=rgb[image_rows],
                vision_masked_position=mim_mask)['encoder_out']
        loss, acc = ce('mim_head', x[:, 1:][mim_mask],
                       codes[image_rows][mim_mask])
        torch.testing.assert_close(losses['loss_mim_image'], loss)
        torch.testing.assert_close(losses['mim_acc_image'], acc)

        ids, pad = model.text_batch([samples[i] for i in (1, 5, 6)])
        x = ref(textual_tokens=text_new,
                text_padding_position=pad.bool())['encoder_out']
        loss, acc = ce('mlm_head', x[text_chosen], ids[text_chosen])
        torch.testing.assert_close(losses['loss_mlm_text'], loss)
        torch.testing.assert_close(losses['mlm_acc_text'], acc)

        ids, pad = model.text_batch([samples[i] for i in (2, 4)])
        x = ref(textual_tokens=pair_new, visual_tokens=rgb[pair_rows],
                text_padding_position=pad.bool(),
                vision_masked_position=pair_mask)['encoder_out']
        n = 1 + (TINY_IMG // TINY['patch_size'])**2
        loss, acc = ce('mim_head', x[:, 1:n][pair_mask],
                       codes[pair_rows][pair_mask])
        torch.testing.assert_close(losses['loss_mim_pair'], loss)
        torch.testing.assert_close(losses['mim_acc_pair'], acc)
        loss, acc = ce('mlm_head', x[:, n:][pair_chosen], ids[pair_chosen])
        torch.testing.assert_close(losses['loss_mlm_pair'], loss)
        torch.testing.assert_close(losses['mlm_acc_pair'], acc)

    # the ratios: 40% of 16 patches, 15% / 50% of the tokens
    assert (mim_mask.sum(1) == 6).all() and (pair_mask.sum(1) == 6).all()
    assert torch.equal(pair_chosen.sum(1),
                       ((ids > 3).sum(1) * 0.5 + 0.5).long().clamp(min=1))


def test_loss_weights(files):
    data = batch('itp')
    model = build(files, loss_weights=dict(text=0.5, pair=2.))
    plain = build(files)
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.manual_seed(0)
        weighted = model(**model.data_preprocessor(data), mode='loss')
        torch.manual_seed(0)
        ones = plain(**plain.data_preprocessor(data), mode='loss')
    for key, w in (('loss_mim_image', 1.), ('loss_mlm_text', .5),
                   ('loss_mim_pair', 2.), ('loss_mlm_pair', 2.)):
        torch.testing.assert_close(weighted[key], w * ones[key])
    with pytest.raises(ValueError, match=r"keys \['images'\]"):
        build(files, init=False, loss_weights=dict(images=1.))


@pytest.mark.parametrize('sources', ['i', 't', 'p', 'it', 'ip', 'tp', 'itp',
                                     'kkp'])
def test_losses_by_batch_content_and_gradients_of_the_used_halves(
        files, sources):
    """A source's losses appear iff the batch holds it; every trainable
    parameter of the halves the batch uses gets a gradient, those of a
    half it does not use get none (no zero-weighted stand-in: DDP runs
    with find_unused_parameters=True, ZeRO-3 and FSDP need nothing)."""
    model = build(files).train()
    losses = model(**model.data_preprocessor(batch(sources)), mode='loss')
    has = {s: s in sources for s in 'itp'}
    has['t'] |= 'k' in sources
    expected = set()
    if has['i']:
        expected |= {'loss_mim_image', 'mim_acc_image'}
    if has['t']:
        expected |= {'loss_mlm_text', 'mlm_acc_text'}
    if has['p']:
        expected |= {'loss_mim_pair', 'mim_acc_pair', 'loss_mlm_pair',
                     'mlm_acc_pair'}
    assert set(losses) == expected
    total, _ = model.parse_losses(losses)
    torch.testing.assert_close(
        total, sum(v for k, v in losses.items() if k.startswith('loss')))
    total.backward()
    vision = has['i'] or has['p']
    language = has['t'] or has['p']
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert 'backbone.vision_embed.mask_token' in trainable
    for name, p in trainable.items():
        is_language = name.startswith('mlm_head.') or is_language_key(
            name.removeprefix('backbone.'))
        assert (p.grad is not None) == (language if is_language else
                                        vision), name
    assert (model.mim_head.weight.grad is not None
            and bool(model.mim_head.weight.grad.any())) == vision
    assert (model.mlm_head.weight.grad is not None
            and bool(model.mlm_head.weight.grad.any())) == language


def test_batch_contract_errors(files):
    model = build(files)
    pre = model.data_preprocessor
    data = batch('it')
    data['data_samples'][0].source = 'images'
    with pytest.raises(ValueError, match="source='images'"):
        pre(data)
    data = batch('it')
    data['inputs'][1] = pixels(1)[0]
    with pytest.raises(ValueError, match=r"sample 1 \('text'\) has an "
                       'image'):
        pre(data)
    data = batch('pt')
    data['inputs'][0] = None
    with pytest.raises(ValueError, match=r"sample 0 \('pair'\) lacks"):
        pre(data)
    data = batch('itp')
    data['inputs'][2] = data['inputs'][2][:, :16]
    with pytest.raises(ValueError, match=r'images of different shapes .*'
                       'crop them to one size'):
        pre(data)
    data = batch('ip')
    with pytest.raises(ValueError, match='1 images for the 2'):
        model(pre(data)['images'][:1], data['data_samples'], mode='loss')
    with pytest.raises(ValueError, match='without "text_ids" or a "text"'):
        model.text_batch([DataSample(source='pair')])


# --------------------------------------------------------- the tokenizer
def test_tokenizer_codes_in_fp32_under_bf16_and_outside_casts(files):
    """The codes are the float32 codes under bf16 autocast and after the
    model is cast to bf16 (the tokenizer is outside the module tree); with
    target_autocast=True the tokenizer follows autocast."""
    model = build(files)
    images = model.data_preprocessor(batch('iiii'))['images']
    fp32 = model.visual_tokens(images)
    dtypes = []
    model.target_generator.encoder.blocks[0].mlp.fc1.register_forward_hook(
        lambda m, i, o: dtypes.append(o.dtype))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert torch.equal(model.visual_tokens(images), fp32)
    model.bfloat16()
    assert all(p.dtype == torch.float32
               for p in model.target_generator.parameters())
    assert not any(k.startswith('target_generator')
                   for k in model.state_dict())
    assert torch.equal(model.visual_tokens(images.bfloat16()).cpu(), fp32)
    model.float()
    model.target_autocast = True
    with torch.autocast('cpu', dtype=torch.bfloat16):
        model.visual_tokens(images)
    assert dtypes == [torch.float32] * 2 + [torch.bfloat16]


def test_tokenizer_view_from_another_student_normalisation(files):
    """With ImageNet mean / std for the student, the tokenizer still sees
    pixel / 127.5 - 1."""
    model = build(files, data_preprocessor=dict(
        type='BEiT3PretrainDataPreprocessor', mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375], to_rgb=True))
    data = batch('ii')
    images = model.data_preprocessor(data)['images']
    rgb = torch.stack(data['inputs']).flip(1).float()
    torch.testing.assert_close(model.tokenizer_view(images), rgb / 127.5 - 1)


def test_tokenizer_codes_one_per_student_patch_of_another_size(
        files, monkeypatch):
    """A patch-7 student at 28 px (the giant's patch 14 at 224, halved)
    with the patch-8 tokenizer (BEiT v2's 16): the tokenizer sees the view
    resized to the 4 x 4 student grid times 8 = 32 px, each of its patches
    over the student patch of the same place, and gives the 16 codes the
    masks index. A view of another grid stops with a clear error."""
    model = build(files, backbone=dict(arch=dict(TINY, patch_size=7),
                                       img_size=28, vocab_size=VOCAB))
    colours = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8,
                            generator=torch.Generator().manual_seed(0))
    data = dict(
        inputs=list(colours.repeat_interleave(7, 2).repeat_interleave(7, 3)),
        data_samples=[DataSample(source='image'),
                      DataSample(source='pair', text='a red circle')])
    images = model.data_preprocessor(data)['images']
    view = model.tokenizer_view(images)
    assert view.shape == (2, 3, 32, 32)
    # the centre of tokenizer patch (i, j) has student patch (i, j)'s colour
    rgb = colours.flip(1).float() / 127.5 - 1
    for offset in (3, 4):
        torch.testing.assert_close(view[:, :, offset::8, offset::8], rgb)
    codes = model.visual_tokens(images)
    assert codes.shape == (2, 16)
    assert torch.equal(codes,
                       model.target_generator.get_codebook_indices(view))
    losses = model(**model.data_preprocessor(data), mode='loss')
    assert {'loss_mim_image', 'loss_mim_pair'} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    monkeypatch.setattr(model, 'tokenizer_view', lambda x: x)
    with pytest.raises(ValueError, match=r'gives 9 codes for a \(28, 28\) '
                       r'view .* patch grid is 4 x 4'):
        model.visual_tokens(images)


def test_train_steps_leave_the_tokenizer_untouched(files):
    """OptimWrapper steps train the model and leave every tensor of the
    tokenizer bit-identical and in eval mode."""
    model = build(files).train()
    before = {k: v.clone()
              for k, v in model.target_generator.state_dict().items()}
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))
    torch.manual_seed(0)
    for step, sources in enumerate(['itp', 'i', 'tk', 'pp']):
        log = model.train_step(batch(sources, seed=step), optim)
        assert torch.isfinite(log['loss'])
    assert not model.target_generator.training
    for k, v in model.target_generator.state_dict().items():
        assert torch.equal(v, before[k]), k
    changed = [k for k, v in model.state_dict().items()
               if not torch.equal(v, weights[k])]
    assert len(changed) == len(weights)


def test_mim_and_mlm_learn(files):
    """Steps on one batch lower every loss."""
    model = build(files).train()
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=3e-3))
    data = batch('iittpp')
    torch.manual_seed(0)
    logs = [model.train_step(data, optim) for _ in range(30)]
    for key in logs[0]:
        if key.startswith('loss_'):
            first = sum(log[key] for log in logs[:3]) / 3
            last = sum(log[key] for log in logs[-3:]) / 3
            print(key, float(first), float(last))
            assert last < 0.8 * first, key


def test_pretraining_configs_let_ddp_find_unused_parameters():
    """Single-source batches leave a half unused: see
    test_single_source_batches_under_sharding_match_one_process."""
    paths = glob.glob(osp.join(ROOT, 'configs/beit3/pretrain/*.py'))
    assert paths
    for path in paths:
        assert Config.fromfile(path).find_unused_parameters is True, path


def test_lockstep_passes_run_every_source(files, monkeypatch):
    """With lockstep_passes (set by the FSDP and DeepSpeed strategies)
    and 2 ranks, an image-only batch also runs the text and pair passes
    on 0 samples: the same losses, and every parameter gets a gradient,
    zero for the unused language half. One rank alone skips them."""
    from beit3_mm.engine.strategies import require_lockstep_passes
    model = build(files).train()
    require_lockstep_passes(model)
    assert model.lockstep_passes
    data = model.data_preprocessor(batch('ii'), True)
    calls, backbone_encode = [], model.backbone.encode

    def encode(**kwargs):
        out = backbone_encode(**kwargs)
        calls.append(out.shape[0])
        return out

    monkeypatch.setattr(model.backbone, 'encode', encode)
    losses = {}
    for world in (1, 2):
        monkeypatch.setattr(
            'beit3_mm.models.selfsup.beit3_pretrain.get_world_size',
            lambda: world)
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        losses[world] = model(**data, mode='loss')
        model.parse_losses(losses[world])[0].backward()
    torch.testing.assert_close(losses[1], losses[2])
    assert calls == [2, 2, 0, 0]  # images; images, empty text and pair
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, name
            if name.startswith('mlm_head.') or is_language_key(
                    name.removeprefix('backbone.')):
                assert not p.grad.any(), name


# rank 0's and rank 1's sources per step: one rank images only and the
# other texts only, both texts, images and pairs against packed texts, and
# no rank using the language half
SHARDED_STEPS = (('i', 't'), ('t', 't'), ('ip', 'k'), ('i', 'i'))
# the strategy configs as shipped, in fp32 (only the sharding differs)
STRATEGY_CONFIGS = dict(
    fsdp=('fsdp_bf16.py', {'strategy.model_wrapper.mixed_precision': None}),
    zero2=('deepspeed_zero2_bf16.py', {'strategy.bf16.enabled': False}),
    zero3=('deepspeed_zero3_bf16.py', {'strategy.bf16.enabled': False}))
RANK_TIMEOUT = 120  # s, for 2 ranks: a collective one rank skips hangs


def sharded_adamw(model: BEiT3Pretrain) -> torch.optim.AdamW:
    # eps 1e-3: see tests/engine/test_distributed.py (float noise in
    # gradients that are zero in exact arithmetic)
    return torch.optim.AdamW(model.parameters(), lr=1e-3, eps=1e-3)


def one_process_run(files, zero_unused: bool) -> tuple:
    """Losses (step, rank) and final weights of one process that takes
    both ranks' batches of SHARDED_STEPS with their masks and averages
    their losses; with ``zero_unused``, a parameter that no batch of the
    step used gets a zero gradient (sharded training) instead of None."""
    torch.manual_seed(0)
    model = build(files).train()
    optim = sharded_adamw(model)
    losses = torch.zeros(len(SHARDED_STEPS), 2)
    for step, sources in enumerate(SHARDED_STEPS):
        for rank in range(2):
            torch.manual_seed(2 * step + rank)
            data = model.data_preprocessor(batch(sources[rank], seed=rank),
                                           True)
            loss, _ = model.parse_losses(model(**data, mode='loss'))
            (loss / 2).backward()
            losses[step, rank] = loss.detach()
        for p in model.parameters():
            if zero_unused and p.requires_grad and p.grad is None:
                p.grad = torch.zeros_like(p)
        optim.step()
        optim.zero_grad()
    return losses, model.state_dict()


def run_two_ranks(out, files, strategy: str) -> list:
    """The (losses, state dict, logged keys) that the 2 gloo ranks save
    after training SHARDED_STEPS under ``strategy`` (FSDP: rank 0 only);
    fails after RANK_TIMEOUT s instead of hanging."""
    context = torch.multiprocessing.start_processes(
        _rank_worker, args=(str(out), files, strategy), nprocs=2,
        join=False, start_method='spawn')
    deadline = time.monotonic() + RANK_TIMEOUT
    while not context.join(max(deadline - time.monotonic(), 0)):
        if time.monotonic() >= deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f'2 ranks under {strategy} still ran after '
                        f'{RANK_TIMEOUT} s: a collective one rank skipped?')
    return [torch.load(path) for path in sorted(out.glob('rank*.pth'))]


def _rank_worker(rank: int, out: str, files: dict, strategy: str) -> None:
    import torch.distributed as dist
    from mmengine.model import MMDistributedDataParallel
    from mmengine.registry import STRATEGIES
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE='2',
                      LOCAL_WORLD_SIZE='2', MASTER_ADDR='127.0.0.1')
    dist.init_process_group('gloo', init_method=f'file://{out}/init',
                            rank=rank, world_size=2)
    if strategy == 'ddp':
        torch.manual_seed(0)
        model = build(files).train()
        wrapped = MMDistributedDataParallel(module=model,
                                            find_unused_parameters=True)
        optim = OptimWrapper(sharded_adamw(model))
    else:
        name, options = STRATEGY_CONFIGS[strategy]
        cfg = Config.fromfile(
            osp.join(ROOT, 'configs/_base_/strategies', name))
        cfg.merge_from_dict(options)
        runner = STRATEGIES.build(cfg.strategy.to_dict())  # seeds anew
        torch.manual_seed(0)
        model = build(files, init=False).train()  # prepare initialises it
        wrapped, optim = runner.prepare(
            model,
            optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3,
                                              eps=1e-3)),
            dispatch_kwargs=dict(max_iters=len(SHARDED_STEPS),
                                 max_epochs=1))
    losses, logged = [], set()
    for step, sources in enumerate(SHARDED_STEPS):
        torch.manual_seed(2 * step + rank)
        log = wrapped.train_step(batch(sources[rank], seed=rank), optim)
        losses.append(log['loss'].detach().float())
        logged.update(log)
    if strategy == 'fsdp':
        state = runner.model_state_dict()
    elif strategy == 'zero3':  # gather the partitions
        import deepspeed
        with deepspeed.zero.GatheredParameters(list(model.parameters())):
            state = {k: v.clone() for k, v in model.state_dict().items()}
    else:
        state = model.state_dict()
    if state:  # FSDP's full state dict: rank 0 only
        torch.save((torch.stack(losses), state, sorted(logged)),
                   osp.join(out, f'rank{rank}.pth'))
    dist.barrier()  # rank 1 leaves after rank 0's gather
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize('strategy', ['ddp', 'fsdp', 'zero2', 'zero3'])
def test_single_source_batches_under_sharding_match_one_process(
        tmp_path, files, strategy):
    """Two gloo ranks (DDP with find_unused_parameters=True as the
    pretraining configs set; FSDP and ZeRO-2 as configured, in fp32):
    steps where a rank has only images, only texts, or both, and one where
    no rank uses the language half. Each rank logs the loss of its batch
    in the one process run, and ends with its weights (rtol 1e-4); under
    FSDP and ZeRO-2, with a zero gradient for a half no rank used (DDP:
    None). Without lockstep_passes FSDP hangs (the ranks gather each layer
    once per pass) and ZeRO-2 stops on mismatched gradient buckets; ZeRO-3
    hung while the count of loss outputs varied with a rank's sources."""
    ranks = run_two_ranks(tmp_path, files, strategy)
    losses, expected = one_process_run(files, strategy != 'ddp')
    for rank, (got_losses, state, logged) in enumerate(ranks):
        # the per-source terms, not the lockstep graph carrier
        assert 'loss_mim_image' in logged and LOCKSTEP_GRAPH not in logged
        torch.testing.assert_close(got_losses, losses[:, rank], rtol=1e-4,
                                   atol=1e-6)
        assert state.keys() == expected.keys()
        for k, v in expected.items():
            torch.testing.assert_close(state[k], v, rtol=1e-4, atol=1e-6,
                                       msg=lambda m: f'rank {rank} {k}: {m}')
