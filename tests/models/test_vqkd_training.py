"""Training BEiT v2's VQ-KD tokenizer (issue 12, 1: "Training a tokenizer";
3: the tokenizer half of the demo)."""
import json
import os
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.optim import OptimWrapper
from mmengine.registry import MODELS
from PIL import Image

import beit3_mm  # noqa: F401
from beit3_mm.engine.hooks import CodebookUsageHook
from beit3_mm.models.selfsup import (VQKDTokenizer, VQKDTrainer,
                                     vqkd_official_state)
from helpers import (ROOT, VQKD_DEMO, VQKD_DEMO_WORK, VQKD_TINY,
                     official_vit_patch_tokens, official_vqkd_state,
                     randomize_, run_tool)

ARCH, IMG = VQKD_TINY['arch'], VQKD_TINY['img_size']
NUM_EMBED, CODE_DIMS = VQKD_TINY['num_embed'], VQKD_TINY['embed_dims']
TEACHER_DIMS = 24  # official_vqkd_state's default decoder_out_dims
TEACHER_ARCH = dict(
    embed_dims=TEACHER_DIMS,
    num_layers=1,
    num_heads=4,
    feedforward_channels=48,
    patch_size=8)
IMAGENET_MEAN = [123.675, 116.28, 103.53]
IMAGENET_STD = [58.395, 57.12, 57.375]
VQKD_CFGS = osp.join(ROOT, 'configs/beit3/vqkd')
CONVERTER = osp.join(ROOT, 'tools/model_converters/vqkd_to_official.py')
IN1K_CFG = osp.join(VQKD_CFGS, 'vqkd-base-p16-d3_clip-b16_8xb64-100e_in1k.py')


def teacher_cfg(checkpoint=None) -> dict:
    """A tiny BEiT-3 teacher, its last layer's patch tokens."""
    return dict(
        type='BEiT3',
        arch=TEACHER_ARCH,
        img_size=IMG,
        with_language=False,
        out_type='featmap',
        init_cfg=checkpoint and dict(type='Pretrained', checkpoint=checkpoint))


@pytest.fixture(scope='module')
def teacher_file(tmp_path_factory) -> str:
    """A trained-looking teacher checkpoint (random weights, saved)."""
    teacher = MODELS.build(teacher_cfg())
    randomize_(teacher, seed=5)
    path = tmp_path_factory.mktemp('teacher') / 'teacher.pth'
    torch.save({'state_dict': {'backbone.' + k: v for k, v in
                               teacher.state_dict().items()}}, path)
    return str(path)


def trainer(teacher_file, decoder_depth=1, **kwargs) -> VQKDTrainer:
    cfg = dict(
        type='VQKDTrainer',
        teacher=teacher_cfg(teacher_file),
        teacher_mean=IMAGENET_MEAN,
        teacher_std=IMAGENET_STD,
        **VQKD_TINY,
        decoder_depth=decoder_depth,
        decoder_out_dims=TEACHER_DIMS,
        data_preprocessor=dict(
            type='ImgDataPreprocessor', mean=[127.5] * 3, std=[127.5] * 3))
    cfg.update(kwargs)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def images(batch=4, seed=0) -> torch.Tensor:
    """Images in [-1, 1] (the tokenizer's view)."""
    g = torch.Generator().manual_seed(seed)
    px = torch.randint(0, 256, (batch, 3, IMG, IMG), generator=g)
    return px.float() / 127.5 - 1


def train_steps(model, n=3, lr=1e-3):
    """``n`` optimizer steps through ``train_step``, as the Runner does."""
    wrapper = OptimWrapper(torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=lr))
    model.train()
    logs = []
    for i in range(n):
        px = ((images(seed=10 + i) + 1) * 127.5).round()
        logs.append(model.train_step(dict(inputs=list(px)), wrapper))
    return logs


def official_loss(state, teacher, x, num_heads, patch_size):
    """The official ``VQKD.forward(x)`` on images ``x`` in [-1, 1] from the
    weights ``state`` (``modeling_vqkd.py``, written out): regress target
    through ``ScalingLayerForIM`` (ImageNet mean / std on [0, 1]), encode,
    quantize, decode, ``emb_loss + calculate_rec_loss``."""
    shift = torch.tensor([0.485, 0.456, 0.406])[None, :, None, None]
    scale = torch.tensor([0.229, 0.224, 0.225])[None, :, None, None]
    norm_imgs = (((x + 1.) * 127.5).clamp(0, 255.) / 255. - shift) / scale
    target = teacher(norm_imgs)[-1].flatten(2).transpose(1, 2)

    def task_layer(name, t):
        t = torch.tanh(F.linear(t, state[f'{name}.0.weight'],
                                state[f'{name}.0.bias']))
        return F.linear(t, state[f'{name}.2.weight'], state[f'{name}.2.bias'])

    feats = official_vit_patch_tokens(state, 'encoder.', x, num_heads,
                                      patch_size)
    z = F.normalize(task_layer('encode_task_layer', feats), p=2, dim=-1)
    B, N, C = z.shape
    z_flat = z.reshape(-1, C)
    weight = state['quantize.embedding.weight']
    d = z_flat.pow(2).sum(dim=1, keepdim=True) + weight.pow(2).sum(dim=1) - \
        2 * torch.einsum('bd,nd->bn', z_flat, weight)
    z_q = weight[torch.argmin(d, dim=1)].view(B, N, C)
    emb_loss = F.mse_loss(z_q, z)
    h = x.shape[-1] // patch_size
    dec = official_vit_patch_tokens(
        state, 'decoder.', z_q.transpose(1, 2).reshape(B, C, h, h),
        num_heads, 1)
    rec = task_layer('decode_task_layer', dec)
    target = target / target.norm(dim=-1, keepdim=True)
    rec = rec / rec.norm(dim=-1, keepdim=True)
    rec_loss = (1 - (target * rec).sum(-1)).mean()
    return emb_loss, rec_loss


@pytest.mark.parametrize('decoder_depth', [1, 3])
def test_loss_matches_official(teacher_file, decoder_depth):
    """loss_quant and loss_rec equal a re-statement of the official
    formula from the same weights (after the k-means init, in training
    mode, where the codebook updates after the lookup)."""
    model = trainer(teacher_file, decoder_depth=decoder_depth).train()
    model.loss(images(seed=1))  # k-means init, one EMA update
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = images(seed=2)
    losses = model.loss(x)
    assert set(losses) == {'loss_quant', 'loss_rec'}
    emb_loss, rec_loss = official_loss(state, model.teacher_model, x,
                                       ARCH['num_heads'], ARCH['patch_size'])
    torch.testing.assert_close(losses['loss_quant'], emb_loss, rtol=1e-4,
                               atol=1e-6)
    torch.testing.assert_close(losses['loss_rec'], rec_loss, rtol=1e-4,
                               atol=1e-6)
    assert 0.1 < float(rec_loss) < 2  # neither trivial nor degenerate


def test_teacher_frozen_and_loaded(teacher_file):
    """The teacher loads its checkpoint through init_cfg, takes no
    gradient, stays in eval mode under train() and is bit-identical after
    training steps, while every student parameter gets a gradient (DDP
    fails on one without) and moves."""
    model = trainer(teacher_file)
    saved = torch.load(teacher_file)['state_dict']
    before = {
        k: v.clone()
        for k, v in model.teacher_model.state_dict().items()
    }
    for k, v in before.items():
        assert torch.equal(v, saved['backbone.' + k]), k
    student = {k: v.clone() for k, v in model.named_parameters()
               if v.requires_grad}
    assert not any(k.startswith('teacher') for k in student)
    model.train()
    sum(model.loss(images()).values()).backward()
    no_grad = [k for k, p in model.named_parameters()
               if p.requires_grad and p.grad is None]
    assert not no_grad
    model.zero_grad()
    train_steps(model)
    assert model.training
    assert not any(m.training for m in model.teacher_model.modules())
    assert not any(p.requires_grad for p in model.teacher_model.parameters())
    for k, v in model.teacher_model.state_dict().items():
        assert torch.equal(v, before[k]), k
    moved = [k for k, p in model.named_parameters()
             if k in student and not torch.equal(p, student[k])]
    assert 'encoder.blocks.0.attn.qkv.weight' in moved
    assert 'decode_task_layer.2.weight' in moved


def test_codebook_kmeans_and_ema(teacher_file):
    """K-means init on the first training batch, EMA updates of the
    codebook after; codes through mode='tensor' change nothing."""
    model = trainer(teacher_file)
    quantize = model.quantize
    assert not quantize.embedding.initted.item()
    assert not quantize.embedding.weight.any()
    train_steps(model, n=1)
    assert quantize.embedding.initted.item()
    torch.testing.assert_close(
        quantize.embedding.weight.norm(dim=-1), torch.ones(NUM_EMBED))
    codebook = quantize.embedding.weight.clone()
    usage = quantize.cluster_size.clone()
    train_steps(model, n=2)
    assert not torch.equal(quantize.embedding.weight, codebook)
    assert not torch.equal(quantize.cluster_size, usage)
    torch.testing.assert_close(
        quantize.embedding.weight.norm(dim=-1), torch.ones(NUM_EMBED))

    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.reset_code_counts()
    codes = model(images(), mode='tensor')
    assert codes.shape == (4, (IMG // 8)**2)
    assert not model.code_counts.any()
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_code_counts(teacher_file):
    """Training batches' codes are counted; eval batches' are not."""
    model = trainer(teacher_file).train()
    model.reset_code_counts()
    model.loss(images(batch=3))
    assert int(model.code_counts.sum()) == 3 * (IMG // 8)**2
    model.eval()
    model.loss(images(batch=3))
    assert int(model.code_counts.sum()) == 3 * (IMG // 8)**2


def fake_runner(model, epoch=0):
    scalars = []
    visualizer = SimpleNamespace(
        add_scalars=lambda d, step: scalars.append((step, dict(d))))
    runner = SimpleNamespace(
        model=model,
        epoch=epoch,
        iter=7,
        visualizer=visualizer,
        logger=MMLogger.get_instance('test_codebook_usage'))
    return runner, scalars


def test_codebook_usage_hook(teacher_file):
    """The share of codes used over an epoch, from a known code stream,
    restarted each epoch."""
    model = trainer(teacher_file)
    hook = CodebookUsageHook()
    runner, scalars = fake_runner(model)
    hook.before_train_epoch(runner)
    model.count_codes(torch.tensor([0, 1, 2, 3]))
    model.count_codes(torch.tensor([[3, 3], [4, 63]]))
    hook.after_train_epoch(runner)
    assert scalars[-1] == (7, dict(codebook_usage=6 / 64, unused_codes=58))
    hook.before_train_epoch(runner)
    model.count_codes(torch.tensor([5]))
    hook.after_train_epoch(runner)
    assert scalars[-1][1] == dict(codebook_usage=1 / 64, unused_codes=63)


def _usage_rank(rank, world_size, init_file, codes, out):
    """One rank of the all-reduce test."""
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'file://{init_file}',
                            rank=rank, world_size=world_size)

    class Counter:  # the code-count protocol of VQKDTrainer
        num_embed = 16

        def reset_code_counts(self):
            self.code_counts = torch.zeros(self.num_embed, dtype=torch.long)

        count_codes = VQKDTrainer.count_codes

    model = Counter()
    runner, scalars = fake_runner(model)
    hook = CodebookUsageHook()
    hook.before_train_epoch(runner)
    model.count_codes(torch.tensor(codes[rank]))
    hook.after_train_epoch(runner)
    with open(f'{out}.{rank}', 'w') as f:
        json.dump(scalars[-1][1], f)
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize('world_size', [1, 2])
def test_codebook_usage_all_reduce(tmp_path, world_size):
    """Over gloo processes, every rank logs the usage of the union of the
    ranks' codes (rank 0: 0, 1; rank 1: 1, 5, 7)."""
    codes = [[0, 1], [1, 5, 7]]
    out = str(tmp_path / 'usage')
    mp.spawn(_usage_rank, args=(world_size, str(tmp_path / 'init'), codes,
                                out), nprocs=world_size)
    used = len({c for rank in codes[:world_size] for c in rank})
    for rank in range(world_size):
        with open(f'{out}.{rank}') as f:
            assert json.load(f) == dict(codebook_usage=used / 16,
                                        unused_codes=16 - used)


@pytest.mark.parametrize('decoder_depth', [1, 3])
def test_official_layout(tmp_path, teacher_file, decoder_depth):
    """The trained weights in the official layout: the key set and shapes
    of the official VQKD, ``{'model': state}``; the file loads strictly
    into VQKDTokenizer (as does the mmengine checkpoint, its teacher left
    out) and gives the trainer's codes; the frozen tokenizer's codebook
    stays bit-identical under train()."""
    model = trainer(teacher_file, decoder_depth=decoder_depth)
    train_steps(model, n=2)
    official = model.official_state_dict()
    ref = official_vqkd_state(ARCH, IMG, NUM_EMBED, CODE_DIMS,
                              decoder_depth=decoder_depth,
                              decoder_out_dims=TEACHER_DIMS)
    assert set(official) == set(ref)
    assert {k: v.shape for k, v in official.items()} == \
        {k: v.shape for k, v in ref.items()}
    assert vqkd_official_state(model.state_dict()).keys() == official.keys()

    ckpt = tmp_path / 'epoch_1.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=1)), ckpt)
    out = run_tool(CONVERTER, str(ckpt), str(tmp_path / 'vqkd.pth'),
                   cwd=tmp_path)
    assert 'teacher_model' in out
    written = torch.load(tmp_path / 'vqkd.pth', weights_only=True)
    assert set(written) == {'model'}
    assert set(written['model']) == set(ref)
    for k, v in official.items():
        assert torch.equal(written['model'][k], v), k

    x = images()
    codes = model(x, mode='tensor')
    for path in (tmp_path / 'vqkd.pth', ckpt):
        tokenizer = MODELS.build(dict(
            type='VQKDTokenizer', **VQKD_TINY,
            init_cfg=dict(type='Pretrained', checkpoint=str(path))))
        tokenizer.init_weights()
        tokenizer.train()
        before = {k: v.clone() for k, v in tokenizer.state_dict().items()}
        assert torch.equal(tokenizer(x), codes)
        assert not tokenizer.training
        for k, v in tokenizer.state_dict().items():
            assert torch.equal(v, before[k]), k
    assert isinstance(tokenizer, VQKDTokenizer)


def test_official_state_refuses_other_weights():
    with pytest.raises(KeyError, match='not VQ-KD trainer weights'):
        vqkd_official_state({'backbone.x': torch.zeros(1)})


def test_in1k_config_is_the_official_model():
    """The ImageNet config builds the official ViT-B/16 VQ-KD with the
    3-layer decoder and 512-dim reconstruction of CLIP ViT-B/16 (its
    weights left out here), key for key."""
    cfg = Config.fromfile(IN1K_CFG)
    cfg.model.teacher.init_cfg = None
    cfg.model.teacher_neck.init_cfg = None
    model = MODELS.build(cfg.model)
    ref = official_vqkd_state(
        dict(embed_dims=768, num_layers=12, num_heads=12,
             feedforward_channels=3072, patch_size=16), 224, 8192, 32,
        decoder_depth=3, decoder_out_dims=512)
    official = model.official_state_dict()
    assert {k: v.shape for k, v in official.items()} == \
        {k: v.shape for k, v in ref.items()}
    with torch.no_grad():
        target = model.teacher_features(torch.zeros(1, 3, 224, 224))
    assert target.shape == (1, 196, 512)
    assert cfg.optim_wrapper.optimizer.lr == 2e-4
    assert cfg.train_cfg.max_epochs == 100


def official_clip_visual(state, x, num_heads, patch_size):
    """OpenAI CLIP's ``VisionTransformer(x, return_all_tokens=True) @ proj``
    of unilm/beit2 vqkd_teacher/clip/model.py (the official CLIP target),
    written out: QuickGELU, LayerNorm eps 1e-5, ``ln_post`` on the patch
    tokens, then the projection."""
    def p(k):
        return state['visual.' + k]

    def ln(t, name):
        return F.layer_norm(t, t.shape[-1:], p(name + '.weight'),
                            p(name + '.bias'), eps=1e-5)

    x = F.conv2d(x, p('conv1.weight'), stride=patch_size)
    x = x.flatten(2).transpose(1, 2)
    B, N, D = x.shape
    x = torch.cat((p('class_embedding').expand(B, 1, D), x), dim=1)
    x = ln(x + p('positional_embedding'), 'ln_pre')
    i = 0
    while f'visual.transformer.resblocks.{i}.ln_1.weight' in state:
        b = f'transformer.resblocks.{i}.'
        q, k, v = F.linear(ln(x, b + 'ln_1'), p(b + 'attn.in_proj_weight'),
                           p(b + 'attn.in_proj_bias')).chunk(3, dim=-1)
        q, k, v = (t.reshape(B, N + 1, num_heads, -1).transpose(1, 2)
                   for t in (q, k, v))
        attn = (q * q.shape[-1]**-0.5) @ k.transpose(-2, -1)
        y = (attn.softmax(-1) @ v).transpose(1, 2).reshape(B, N + 1, D)
        x = x + F.linear(y, p(b + 'attn.out_proj.weight'),
                         p(b + 'attn.out_proj.bias'))
        y = F.linear(ln(x, b + 'ln_2'), p(b + 'mlp.c_fc.weight'),
                     p(b + 'mlp.c_fc.bias'))
        y = y * torch.sigmoid(1.702 * y)
        x = x + F.linear(y, p(b + 'mlp.c_proj.weight'),
                         p(b + 'mlp.c_proj.bias'))
        i += 1
    return ln(x, 'ln_post')[:, 1:] @ p('proj')


def test_in1k_teacher_is_the_official_clip_target(tmp_path):
    """The ImageNet config's teacher (mmpretrain's ViT + CLIPProjection,
    loaded from a CLIP file converted by mmpretrain's
    openai-clip_to_mmpretrain-clip.py) gives the official regress target:
    CLIP's patch tokens after ln_post @ proj of the ScalingLayerForClip
    view. A small CLIP (2 layers, width 64) with random weights."""
    import importlib.util

    import mmpretrain
    converter = osp.join(osp.dirname(mmpretrain.__file__), '.mim/tools/'
                         'model_converters/openai-clip_to_mmpretrain-clip.py')
    spec = importlib.util.spec_from_file_location('clip_converter',
                                                  converter)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    D, L, heads, patch, out_dims = 64, 2, 4, 16, 48
    g = torch.Generator().manual_seed(3)
    shapes = {'conv1.weight': (D, 3, patch, patch), 'class_embedding': (D, ),
              'positional_embedding': (5, D), 'ln_pre.weight': (D, ),
              'ln_pre.bias': (D, ), 'ln_post.weight': (D, ),
              'ln_post.bias': (D, ), 'proj': (D, out_dims)}
    for i in range(L):
        b = f'transformer.resblocks.{i}.'
        shapes.update({
            b + 'ln_1.weight': (D, ), b + 'ln_1.bias': (D, ),
            b + 'attn.in_proj_weight': (3 * D, D),
            b + 'attn.in_proj_bias': (3 * D, ),
            b + 'attn.out_proj.weight': (D, D),
            b + 'attn.out_proj.bias': (D, ),
            b + 'ln_2.weight': (D, ), b + 'ln_2.bias': (D, ),
            b + 'mlp.c_fc.weight': (4 * D, D), b + 'mlp.c_fc.bias': (4 * D, ),
            b + 'mlp.c_proj.weight': (D, 4 * D), b + 'mlp.c_proj.bias': (D, )
        })
    state = {
        'visual.' + k: (1 if 'ln' in k and k.endswith('weight') else 0) +
        (0.1 if 'ln' in k else 0.2) * torch.randn(s, generator=g)
        for k, s in shapes.items()
    }
    torch.save(module.convert_clip(state), tmp_path / 'clip.pth')

    cfg = Config.fromfile(IN1K_CFG)
    model_cfg = cfg.model
    model_cfg.update(**VQKD_TINY, decoder_depth=1,
                     decoder_out_dims=out_dims)
    model_cfg.teacher.update(
        arch=dict(embed_dims=D, num_layers=L, num_heads=heads,
                  feedforward_channels=4 * D), img_size=IMG)
    model_cfg.teacher.init_cfg.checkpoint = str(tmp_path / 'clip.pth')
    model_cfg.teacher_neck.update(in_channels=D, out_channels=out_dims)
    model_cfg.teacher_neck.init_cfg.checkpoint = str(tmp_path / 'clip.pth')
    model = MODELS.build(model_cfg)
    model.init_weights()
    x = images()
    shift = torch.tensor([0.48145466, 0.4578275, 0.40821073])
    scale = torch.tensor([0.26862954, 0.26130258, 0.27577711])
    clip_view = (((x + 1.) * 127.5).clamp(0, 255.) / 255. -
                 shift[None, :, None, None]) / scale[None, :, None, None]
    torch.testing.assert_close(
        model.teacher_features(x),
        official_clip_visual(state, clip_view, heads, patch), rtol=1e-4,
        atol=1e-4)


def scalars(work_dir) -> list:
    """The records of a run's ``vis_data/scalars.json``."""
    path, = [osp.join(d, 'scalars.json')
             for d, _, files in os.walk(work_dir) if 'scalars.json' in files]
    with open(path) as f:
        return [json.loads(line) for line in f]


# measured (CPU, seed 0): 0.41-0.53 over the last 10 epochs, 0.5 (32 of
# 64 codes) in the last; loss_rec 0.88 (first log) -> 0.31
MIN_DEMO_USAGE = 0.35


@pytest.mark.slow
def test_demo(vqkd_demo):
    """The README commands of the tokenizer demo (the session's run,
    ``conftest.vqkd_demo``): the reconstruction loss falls, the codebook
    usage of the last epoch is above MIN_DEMO_USAGE, and the exported file
    loads into VQKDTokenizer as the pretraining demo reads it, giving
    varied codes."""
    root = vqkd_demo.root
    records = scalars(root / VQKD_DEMO_WORK)
    usage = [r['codebook_usage'] for r in records if 'unused_codes' in r]
    rec = [r['loss_rec'] for r in records if 'loss_rec' in r]
    assert len(usage) == 20
    assert usage[-1] > MIN_DEMO_USAGE, usage
    assert rec[-1] < 0.5 * rec[0], rec

    cfg = Config.fromfile(VQKD_DEMO)
    tokenizer = MODELS.build(dict(
        type='VQKDTokenizer', arch=cfg.model.arch, img_size=32,
        num_embed=cfg.model.num_embed, embed_dims=cfg.model.embed_dims,
        init_cfg=dict(type='Pretrained',
                      checkpoint=str(root / 'data/demo_vqkd.pth'))))
    tokenizer.init_weights()
    folder = root / 'data/demo_pretrain/images'
    px = torch.stack([
        torch.from_numpy(np.array(Image.open(folder / name))).permute(
            2, 0, 1) for name in sorted(os.listdir(folder))[:64]
    ]).float()
    codes = tokenizer(px / 127.5 - 1)
    assert len(codes.unique()) > MIN_DEMO_USAGE * cfg.model.num_embed * 0.5
