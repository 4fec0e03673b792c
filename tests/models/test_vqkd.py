"""BEiT v2's VQ-KD tokenizer as the frozen target generator (issue 12, 1)."""
import datetime
from functools import partial

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import MMLogger
from mmengine.registry import MODELS

import beit3_mm  # noqa: F401
from beit3_mm.models.selfsup import (NormEMAVectorQuantizer, VQKDTokenizer,
                                     mmpretrain_to_official)
from beit3_mm.models.utils.weight_loading import CheckpointMismatchError
from helpers import (VQKD_TINY, official_vqkd_codes, official_vqkd_state,
                     randomize_)

ARCH, IMG = VQKD_TINY['arch'], VQKD_TINY['img_size']
NUM_EMBED, CODE_DIMS = VQKD_TINY['num_embed'], VQKD_TINY['embed_dims']
VIT_ARCH = {k: v for k, v in ARCH.items() if k != 'patch_size'}


def tokenizer(init_cfg=None, **kwargs) -> VQKDTokenizer:
    return MODELS.build(
        dict(type='VQKDTokenizer', **dict(VQKD_TINY, **kwargs),
             init_cfg=init_cfg))


def official_file(path, state=None, **extra) -> str:
    """A released-layout tokenizer file ``{'model': state}``."""
    state = state if state is not None else official_vqkd_state(
        ARCH, IMG, NUM_EMBED, CODE_DIMS)
    torch.save({'model': state, **extra}, path)
    return str(path)


def loaded(path) -> VQKDTokenizer:
    model = tokenizer(init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    return model


def pixels(size: int = IMG, batch: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, size, size), generator=g,
                         dtype=torch.uint8)


def two_views(px: torch.Tensor):
    """The student's and the tokenizer's view of 0..255 pixels through
    mmpretrain's ``TwoNormDataPreprocessor`` as its BEiT v2 configs set it
    (ImageNet mean/std, then mean = std = 127.5)."""
    from mmpretrain.models import TwoNormDataPreprocessor
    pre = TwoNormDataPreprocessor(
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        second_mean=[127.5] * 3,
        second_std=[127.5] * 3)
    return pre({'inputs': [px, px], 'data_samples': None})['inputs']


@pytest.mark.parametrize('size', [IMG, 48])
def test_codes_match_official(tmp_path, size):
    """Encoder features and codes equal the official forward on the same
    file, the tokenizer fed the preprocessor's [-1, 1] view and the official
    code its [0, 1] images; at another size through the official position
    interpolation."""
    state = official_vqkd_state(ARCH, IMG, NUM_EMBED, CODE_DIMS)
    model = loaded(official_file(tmp_path / 'vqkd.pth', state))
    px = pixels(size)
    student, target = two_views(px)
    assert target.min() >= -1 and target.max() <= 1
    assert not torch.allclose(student, target)
    feats, codes = official_vqkd_codes(state, px.float() / 255,
                                       ARCH['num_heads'], ARCH['patch_size'])
    torch.testing.assert_close(
        model.encoder(target), feats, rtol=0, atol=1e-5)
    ours = model.get_codebook_indices(target)
    assert ours.dtype == torch.long
    assert ours.shape == (3, (size // 8)**2)
    assert torch.equal(ours, codes)
    assert torch.equal(model(target), codes)
    assert len(codes.unique()) > 8  # a spread of codes, not one


def test_encoder_matches_timm_beit(tmp_path):
    """timm's BEiT with the official VQ-KD options (q/v bias, abs
    positions, no layer scale, fc_norm) gives the same patch features from
    the same encoder weights, loaded strictly."""
    from timm.models.beit import Beit
    state = official_vqkd_state(ARCH, IMG, NUM_EMBED, CODE_DIMS)
    model = loaded(official_file(tmp_path / 'vqkd.pth', state))
    ref = Beit(
        img_size=IMG,
        patch_size=ARCH['patch_size'],
        num_classes=0,
        global_pool='avg',
        embed_dim=ARCH['embed_dims'],
        depth=ARCH['num_layers'],
        num_heads=ARCH['num_heads'],
        mlp_ratio=ARCH['feedforward_channels'] / ARCH['embed_dims'],
        qkv_bias=True,
        init_values=None,
        use_abs_pos_emb=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6)).eval()
    ref.load_state_dict({
        k[len('encoder.'):]: v
        for k, v in state.items() if k.startswith('encoder.')
    })
    x = two_views(pixels())[1]
    with torch.no_grad():
        expected = ref.fc_norm(ref.forward_features(x)[:, 1:])
    torch.testing.assert_close(model.encoder(x), expected, rtol=0, atol=1e-5)


def mmpretrain_vqkd(seed: int = 0):
    """mmpretrain's VQKD with its BEiT v2 encoder config, random weights and
    a unit-row codebook."""
    from mmpretrain.models.selfsup.beit import VQKD
    encoder = dict(
        arch=VIT_ARCH,
        img_size=IMG,
        patch_size=ARCH['patch_size'],
        out_indices=-1,
        norm_cfg=dict(type='LN', eps=1e-6),
        final_norm=True,
        out_type='featmap',
        with_cls_token=True,
        use_abs_pos_emb=True,
        use_rel_pos_bias=False,
        use_shared_rel_pos_bias=False,
        layer_scale_init_value=0.)
    model = VQKD(
        encoder_config=encoder,
        num_embed=NUM_EMBED,
        embed_dims=CODE_DIMS,
        quantize_kmeans_init=False)
    randomize_(model, seed)
    with torch.no_grad():
        w = model.quantize.embedding.weight
        w.copy_(F.normalize(w, dim=-1))
    return model


def test_mmpretrain_layout_loads_and_matches(tmp_path):
    """An mmpretrain VQKD checkpoint (mmengine layout) loads through the
    key map and gives mmpretrain's codes; the codebook statistics it lacks
    are named in the log."""
    ref = mmpretrain_vqkd().eval()
    path = str(tmp_path / 'mmpretrain_vqkd.pth')
    torch.save({'state_dict': ref.state_dict(), 'meta': {}}, path)
    logger = MMLogger.get_instance('vqkd_mmpretrain', log_level='INFO')
    model = tokenizer(init_cfg=dict(type='Pretrained', checkpoint=path))
    with logger_capture(logger) as lines:
        model.init_weights()
    assert 'mapped mmpretrain VQKD keys' in lines[-1]
    assert 'quantize.embedding.cluster_size' in lines[-1]
    x = two_views(pixels())[1]
    with torch.no_grad():
        expected = ref(x)
    assert torch.equal(model(x), expected)
    # the map covers every key mmpretrain's VQKD has
    mapped = mmpretrain_to_official(ref.state_dict())
    assert set(mapped) <= set(model.state_dict())


class logger_capture:
    """Collect the messages of ``logger`` (and make it current)."""

    def __init__(self, logger: MMLogger):
        self.logger = logger

    def __enter__(self):
        import logging
        lines = []

        class Collect(logging.Handler):

            def emit(self, record):
                lines.append(record.getMessage())

        self.handler = Collect()
        self.logger.addHandler(self.handler)
        return lines

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)


def test_official_file_loads_strictly(tmp_path):
    """Every tensor of the tokenizer comes from the file; the decoder,
    decoder task layer and the training-only teacher / scaling keys are
    left out, with one log line; nothing else is dropped."""
    state = official_vqkd_state(ARCH, IMG, NUM_EMBED, CODE_DIMS,
                                decoder_depth=3)
    teacher = {
        'teacher_model.visual.proj': torch.randn(4, 4),
        'scaling_layer.shift': torch.randn(1, 3, 1, 1),
        'scaling_layer.scale': torch.randn(1, 3, 1, 1),
    }
    path = official_file(tmp_path / 'vqkd.pth', {**state, **teacher})
    logger = MMLogger.get_instance('vqkd_official', log_level='INFO')
    model = tokenizer(init_cfg=dict(type='Pretrained', checkpoint=path))
    with logger_capture(logger) as lines:
        model.init_weights()
    own = model.state_dict()
    decoder = [k for k in state if k.startswith(('decoder.', 'decode_'))]
    assert decoder
    assert set(own) == set(state) - set(decoder)
    for k, v in own.items():
        assert torch.equal(v, state[k]), k
    summary = lines[-1]
    assert summary.startswith(f'loaded the VQ-KD tokenizer ({len(own)} '
                              f'tensors) from {path}')
    assert 'left out the decoder' in summary
    assert f'decoder.blocks.* ({3 * 13})' in summary
    assert ('left out training-only keys: scaling_layer.* (2), '
            'teacher_model.visual.* (1)') in summary


def test_file_is_read_weights_only(tmp_path):
    path = official_file(
        tmp_path / 'vqkd.pth', when=datetime.date(2022, 8, 1))
    with pytest.raises(RuntimeError, match='refusing to load .*datetime'):
        loaded(path)


def _drop(state, prefix):
    return {k: v for k, v in state.items() if not k.startswith(prefix)}


@pytest.mark.parametrize(
    'make, error, message', [
        (lambda s: {'beit3.encoder.layers.0.ffn.fc1.weight': torch.ones(2)},
         CheckpointMismatchError, r'not a VQ-KD tokenizer file .*beit3'),
        (lambda s: official_vqkd_state(ARCH, IMG, 2 * NUM_EMBED, CODE_DIMS),
         CheckpointMismatchError,
         r'quantize\.(cluster_size|embedding\.\w+) has shape \(128'),
        (lambda s: _drop(s, 'encode_task_layer.'), CheckpointMismatchError,
         r'missing encode_task_layer\.0\.\* \(2\), encode_task_layer\.2\.\* '
         r'\(2\); unexpected none'),
        (lambda s: {
            **s, 'encoder.blocks.7.norm1.weight': torch.ones(32)
        }, CheckpointMismatchError,
         r'missing none; unexpected encoder\.blocks\.\* \(1\).*blocks\.7'),
        (lambda s: {
            **s, 'quantize.embedding.initted': torch.Tensor([False])
        }, CheckpointMismatchError, r'codebook was never initialised'),
    ],
    ids=['beit3-file', 'codebook-size', 'missing', 'unexpected', 'empty'])
def test_wrong_files(tmp_path, make, error, message):
    state = official_vqkd_state(ARCH, IMG, NUM_EMBED, CODE_DIMS)
    path = official_file(tmp_path / 'bad.pth', make(state))
    with pytest.raises(error, match=message) as info:
        loaded(path)
    assert str(path) in str(info.value)
    assert '\n' not in str(info.value)


def test_missing_file_and_prefix(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        loaded(str(tmp_path / 'nope.pth'))
    state = official_vqkd_state(ARCH, IMG, NUM_EMBED, CODE_DIMS)
    path = str(tmp_path / 'beitv2.pth')
    torch.save({'state_dict': {'target_generator.' + k: v
                               for k, v in state.items()}}, path)
    model = tokenizer(init_cfg=dict(
        type='Pretrained', checkpoint=path, prefix='target_generator.'))
    model.init_weights()
    assert torch.equal(model.quantize.embedding.weight,
                       state['quantize.embedding.weight'])
    model = tokenizer(init_cfg=dict(
        type='Pretrained', checkpoint=path, prefix='tokenizer.'))
    with pytest.raises(CheckpointMismatchError,
                       match="no keys under prefix 'tokenizer.'"):
        model.init_weights()


def test_empty_codebook_stops():
    """A tokenizer without a file and with a k-means-pending codebook would
    give code 0 everywhere: it stops instead."""
    model = tokenizer()
    model.init_weights()
    with pytest.raises(RuntimeError, match='the codebook is empty'):
        model.get_codebook_indices(torch.zeros(1, 3, IMG, IMG))


class Student(nn.Module):
    """A parent that predicts the tokenizer's codes, as MIM pretraining."""

    def __init__(self, target_generator: nn.Module):
        super().__init__()
        self.target_generator = target_generator
        self.head = nn.Linear(3 * 8 * 8, NUM_EMBED)

    def loss(self, images: torch.Tensor) -> torch.Tensor:
        targets = self.target_generator(images)
        patches = F.unfold(images, 8, stride=8).transpose(1, 2)
        logits = self.head(patches)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def _train_steps(parent: Student, steps: int = 3) -> None:
    optimizer = torch.optim.AdamW(
        parent.parameters(), lr=1e-2, weight_decay=0.05)
    for seed in range(steps):
        parent.train()
        loss = parent.loss(two_views(pixels(seed=seed))[1])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_frozen_under_parent_training(tmp_path):
    """model.train() and optimizer steps of a parent leave the tokenizer in
    eval mode, without gradients, and every parameter and buffer (codebook,
    code usage, k-means flag) bit-identical; the student does learn."""
    model = loaded(official_file(tmp_path / 'vqkd.pth'))
    parent = Student(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    head_before = parent.head.weight.detach().clone()
    _train_steps(parent)
    assert not any(m.training for m in model.modules())
    assert parent.training and parent.head.training
    assert all(not p.requires_grad and p.grad is None
               for p in model.parameters())
    after = model.state_dict()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k
    assert not torch.equal(head_before, parent.head.weight)


def test_mmpretrain_vqkd_is_not_frozen():
    """The hazard the test above guards against: mmpretrain's VQKD as a
    target generator moves its codebook under the parent's train()."""
    ref = mmpretrain_vqkd()
    ref.requires_grad_(False)
    before = ref.quantize.embedding.weight.clone()
    _train_steps(Student(ref))
    assert ref.training
    assert not torch.equal(before, ref.quantize.embedding.weight)


# The official quantizer's formulas (unilm/beit2 norm_ema_quantizer.py),
# written out.


def official_kmeans(samples, num_clusters, num_iters=10):
    dim = samples.shape[-1]
    num = samples.shape[0]
    if num >= num_clusters:
        means = samples[torch.randperm(num)[:num_clusters]]
    else:
        means = samples[torch.randint(0, num, (num_clusters, ))]
    for _ in range(num_iters):
        buckets = (samples @ means.t()).max(dim=-1).indices
        bins = torch.bincount(buckets, minlength=num_clusters)
        zero_mask = bins == 0
        new_means = buckets.new_zeros(num_clusters, dim, dtype=samples.dtype)
        new_means.scatter_add_(0, buckets[:, None].expand(-1, dim), samples)
        new_means = new_means / bins.masked_fill(zero_mask, 1)[..., None]
        new_means = F.normalize(new_means, p=2, dim=-1)
        means = torch.where(zero_mask[..., None], means, new_means)
    return means, bins


def official_step(state, z, training, decay=0.99):
    """One official forward on z (B, d, h, w): updates ``state`` (weight,
    cluster_size, embedding cluster_size, initted); returns loss and ids."""
    z = F.normalize(z.permute(0, 2, 3, 1), p=2, dim=-1)
    flat = z.reshape(-1, z.shape[-1])
    if not state['initted']:
        embed, sizes = official_kmeans(flat, state['weight'].shape[0])
        state.update(weight=embed, embed_cluster_size=sizes.float(),
                     initted=True)
    w = state['weight']
    d = flat.pow(2).sum(1, keepdim=True) + w.pow(2).sum(1) - 2 * flat @ w.t()
    ids = d.argmin(1)
    z_q = w[ids].view(z.shape)
    enc = F.one_hot(ids, w.shape[0]).type(z.dtype)
    bins = enc.sum(0)
    state['cluster_size'] = state['cluster_size'] * decay + bins * (1 - decay)
    if training:
        zero = bins == 0
        mean = ((flat.t() @ enc) / bins.masked_fill(zero, 1.)[None]).t()
        mean = torch.where(zero[..., None], w, F.normalize(mean, dim=-1))
        state['weight'] = F.normalize(w * decay + mean * (1 - decay), dim=-1)
    return F.mse_loss(z_q, z), ids


def test_quantizer_kmeans_and_ema_match_official():
    """Training: cosine k-means init on the first batch, then normalised EMA
    of the codebook (unused codes keep their rows) and EMA code counts;
    eval: only the counts; commitment loss and straight-through gradient;
    all as the official formulas, same seed."""
    quantizer = NormEMAVectorQuantizer(num_embed=32, embed_dims=8)
    assert not quantizer.embedding.initted
    ref = dict(
        weight=torch.zeros(32, 8), cluster_size=torch.zeros(32),
        initted=False)
    # 16 vectors a batch for 32 codes: some codes go unused every step
    batches = [
        torch.randn(1, 8, 4, 4, generator=torch.Generator().manual_seed(i))
        for i in range(4)
    ]
    for i, z in enumerate(batches):
        training = i < 3
        quantizer.train(training)
        before = quantizer.embedding.weight.clone()
        torch.manual_seed(100 + i)
        z_in = z.clone().requires_grad_(True)
        z_q, loss, ids = quantizer(z_in)
        torch.manual_seed(100 + i)
        ref_loss, ref_ids = official_step(ref, z, training)
        assert torch.equal(ids, ref_ids)
        torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(
            quantizer.embedding.weight, ref['weight'], rtol=0, atol=1e-6)
        torch.testing.assert_close(
            quantizer.cluster_size, ref['cluster_size'], rtol=0, atol=1e-6)
        if i == 0:
            assert quantizer.embedding.initted
            assert torch.equal(quantizer.embedding.cluster_size,
                               ref['embed_cluster_size'])
        else:
            unused = torch.ones(32, dtype=torch.bool)
            unused[ids] = False
            assert unused.any()
            torch.testing.assert_close(quantizer.embedding.weight[unused],
                                       before[unused], rtol=0, atol=1e-6)
            if not training:
                assert torch.equal(quantizer.embedding.weight, before)
        # straight-through: the gradient of z_q is that of normalised z
        z_q.sum().backward()
        z_ref = z.clone().requires_grad_(True)
        F.normalize(z_ref, dim=1).sum().backward()
        torch.testing.assert_close(z_in.grad, z_ref.grad)


def test_target_generator_of_mmpretrain_beit(tmp_path):
    """A drop-in target generator of mmpretrain's BEiT algorithm: built by
    name from the mmpretrain scope, loaded by the parent's init_weights,
    fed the preprocessor's second view, frozen through train_step."""
    from mmengine.optim import OptimWrapper
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
    from mmpretrain.structures import DataSample
    path = official_file(tmp_path / 'vqkd.pth')
    model = MMPRETRAIN_MODELS.build(
        dict(
            type='BEiT',
            backbone=dict(
                type='BEiTPretrainViT',
                arch=VIT_ARCH,
                img_size=IMG,
                patch_size=ARCH['patch_size'],
                out_indices=[-2, -1],
                final_norm=False,
                use_shared_rel_pos_bias=True,
                layer_scale_init_value=0.1),
            neck=dict(
                type='BEiTV2Neck',
                num_layers=1,
                early_layers=1,
                backbone_arch=dict(VIT_ARCH, depth=ARCH['num_layers'])),
            head=dict(
                type='BEiTV2Head',
                embed_dims=ARCH['embed_dims'],
                num_embed=NUM_EMBED,
                loss=dict(type='CrossEntropyLoss')),
            target_generator=dict(
                type='VQKDTokenizer',
                **VQKD_TINY,
                init_cfg=dict(type='Pretrained', checkpoint=path)),
            data_preprocessor=dict(
                type='TwoNormDataPreprocessor',
                mean=[123.675, 116.28, 103.53],
                std=[58.395, 57.12, 57.375],
                second_mean=[127.5] * 3,
                second_std=[127.5] * 3)))
    assert isinstance(model.target_generator, VQKDTokenizer)
    model.init_weights()
    state = official_vqkd_state(ARCH, IMG, NUM_EMBED, CODE_DIMS)
    before = model.target_generator.state_dict()
    for k, v in before.items():
        assert torch.equal(v, state[k]), k
    before = {k: v.clone() for k, v in before.items()}
    optim_wrapper = OptimWrapper(torch.optim.AdamW(model.parameters()))
    px = pixels()
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[1:3, 1:3] = True
    samples = [DataSample().set_mask(mask) for _ in range(len(px))]
    for _ in range(2):
        model.train()
        losses = model.train_step(
            dict(inputs=[px, px], data_samples=samples), optim_wrapper)
        assert torch.isfinite(losses['loss_1'] + losses['loss_2'])
    assert not model.target_generator.training
    for k, v in model.target_generator.state_dict().items():
        assert torch.equal(v, before[k]), k
