"""Shared test helpers: tiny archs, the torchscale reference, synthetic
released checkpoints, running the tools."""
import argparse
import os
import os.path as osp
import subprocess
import sys
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch

TINY = dict(
    embed_dims=32,
    num_layers=2,
    num_heads=4,
    feedforward_channels=64,
    patch_size=8)
TINY_IMG = 32
VOCAB = 100
# the tests' tiny VQ-KD tokenizer: the TINY encoder, 64 codes of 8 dims
VQKD_TINY = dict(arch=TINY, img_size=TINY_IMG, num_embed=64, embed_dims=8)
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONVERTER = osp.join(ROOT, 'tools/model_converters/beit3_to_mm.py')


def torchscale_beit3(arch: dict, img_size: int, vocab_size: int = VOCAB,
                     output_norm: bool = True, seed: int = 0):
    """The official backbone (torchscale) with random, non-trivial weights."""
    from torchscale.architecture.config import EncoderConfig
    from torchscale.model.BEiT3 import BEiT3 as RefBEiT3
    args = EncoderConfig(
        img_size=img_size,
        patch_size=arch['patch_size'],
        vocab_size=vocab_size,
        multiway=True,
        layernorm_embedding=False,
        normalize_output=output_norm,
        no_output_layer=True,
        drop_path_rate=0.,
        encoder_embed_dim=arch['embed_dims'],
        encoder_attention_heads=arch['num_heads'],
        encoder_ffn_embed_dim=arch['feedforward_channels'],
        encoder_layers=arch['num_layers'],
        checkpoint_activations=False)
    model = RefBEiT3(args).eval()
    randomize_(model, seed)
    return model


def randomize_(module: torch.nn.Module, seed: int = 0) -> None:
    """Fill every tensor with random values (norm weights around 1), so that
    a swapped or ignored tensor changes the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if 'norm' in name or '_ln' in name:
                p.copy_(1 + 0.1 * noise if name.endswith('weight') else
                        0.1 * noise)
            else:
                p.copy_(0.05 * noise)


def released_state(backbone: Dict[str, torch.Tensor],
                   heads: Optional[Dict[str, torch.Tensor]] = None) -> dict:
    """A state dict in the released layout: ``beit3.`` + backbone keys."""
    state = {'beit3.' + k: v.clone() for k, v in backbone.items()}
    state.update(heads or {})
    return state


def save_released(path, backbone, heads=None, official_training=False):
    """Write a released file (``{'model': ...}``), or one saved by the
    official training script (with ``args``, ``optimizer``, ...)."""
    ckpt = {'model': released_state(backbone, heads)}
    if official_training:
        ckpt.update(
            optimizer={'state': {}, 'param_groups': [{'lr': 1e-3}]},
            epoch=3,
            scaler={'scale': 65536.0},
            args=argparse.Namespace(model='beit3_base_patch16_224', lr=7e-4))
    torch.save(ckpt, path)
    return str(path)


def pretrain_heads(dims: int, vocab: int = VOCAB) -> Dict[str, torch.Tensor]:
    return {
        'mim_head.weight': torch.randn(8192, dims),
        'mim_head.bias': torch.randn(8192),
        'mlm_head.weight': torch.randn(vocab, dims),
        'mlm_head.bias': torch.randn(vocab),
    }


def official_resize(table: torch.Tensor, new_size: int) -> torch.Tensor:
    """The position-table interpolation of unilm/beit3 utils.py,
    ``load_model_and_may_interpolate``, written out as there."""
    num_extra_tokens = 3
    embedding_size = table.shape[-1]
    orig_size = int((table.shape[-2] - num_extra_tokens)**0.5)
    extra_tokens = table[:num_extra_tokens].unsqueeze(0)
    pos_tokens = table[num_extra_tokens:]
    pos_tokens = pos_tokens.reshape(-1, orig_size, orig_size,
                                    embedding_size).permute(0, 3, 1, 2)
    pos_tokens = torch.nn.functional.interpolate(
        pos_tokens,
        size=(new_size, new_size),
        mode='bicubic',
        align_corners=False)
    pos_tokens = pos_tokens.permute(0, 2, 3, 1).flatten(1, 2)
    return torch.cat((extra_tokens, pos_tokens), dim=1).squeeze(0)


def build_model(cfg):
    """The model of a config with its data preprocessor, as the Runner
    builds it."""
    from mmpretrain.registry import MODELS
    model = dict(cfg.model)
    model.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    return MODELS.build(model)


def init_model(cfg, seed: int = 0):
    """:func:`build_model` then ``init_weights()``, under
    ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    model.init_weights()
    return model


def plain_optim_wrapper(model, cfg):
    """The config's optimizer and parameter-wise settings in a plain
    ``OptimWrapper`` (no AMP: the recipes' loss scaling needs a GPU)."""
    from mmengine.optim import build_optim_wrapper
    optim_cfg = dict(cfg.optim_wrapper, type='OptimWrapper')
    optim_cfg.pop('loss_scale', None)
    return build_optim_wrapper(model, optim_cfg)


def vl_demo(tmp_path_factory, **sizes) -> Tuple[str, Dict[str, str]]:
    """A VL demo set (:func:`beit3_mm.demo.make_vl_demo` with ``sizes``)
    whose 60-piece tokenizer stands in for beit3.spm: its root and its
    files by absolute path."""
    from beit3_mm.demo import make_vl_demo
    root = str(tmp_path_factory.mktemp('demo_vl'))
    files = make_vl_demo(root, vocab_size=60, **sizes)
    return root, {k: osp.join(root, v) for k, v in files.items()}


def padded_ids(lengths, width: int, seed: int = 2):
    """Random text ids ``<s> ... </s>`` of the given lengths padded to
    ``width`` with ``<pad>``, and their padding mask (1 = pad)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.ones(len(lengths), width, dtype=torch.long)
    pad = torch.ones(len(lengths), width, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(4, VOCAB, (n, ), generator=g)
        ids[i, 0], ids[i, n - 1] = 0, 2
        pad[i, :n] = 0
    return ids, pad


def random_heads(shapes: Dict[str, tuple], seed: int = 1):
    """Random head tensors of the given shapes (norm weights around 1)."""
    g = torch.Generator().manual_seed(seed)
    return {
        k: (1 if 'norm' in k and k.endswith('weight') else 0) +
        0.1 * torch.randn(shape, generator=g)
        for k, shape in shapes.items()
    }


def converted_model(cfg, src: str, dst: str, kind: str):
    """Convert the released file ``src`` with
    ``tools/model_converters/beit3_to_mm.py`` into ``dst`` and load it,
    strictly, into a fresh model of ``cfg`` (in eval mode); checks that the
    converter took it for a ``kind`` file."""
    from mmengine.runner import load_checkpoint
    out = subprocess.run([sys.executable, CONVERTER, src, dst], check=True,
                         capture_output=True, text=True).stdout
    assert f'{kind} file' in out, out
    cfg.model.init_cfg = None
    model = build_model(cfg).eval()
    ckpt = load_checkpoint(model, dst, strict=True)
    assert ckpt['meta']['beit3_kind'] == kind
    return model


def assert_released_logits(cfg, src: str, official: Callable, images,
                           ids, pad, texts: Sequence[str], field: str,
                           converted: Optional[Tuple[str, str]] = None):
    """A released VL task file ``src``, loaded into the model of ``cfg``
    through ``init_cfg`` and (``converted=(dst, kind)``) through
    :func:`converted_model`, gives the official logits
    (``official(ids, pad)`` for ``images``): from token ids
    (``forward_logits``) and from data samples with ``texts`` in ``field``,
    which the model tokenises itself (``mode='tensor'``)."""
    from mmpretrain.structures import DataSample
    expected = official(ids, pad)
    cfg.model.init_cfg = dict(type='Pretrained', checkpoint=src)
    model = build_model(cfg).eval()
    model.init_weights()
    expected_from_texts = official(*model.tokenize(texts))
    samples = [DataSample(**{field: t}) for t in texts]
    models = [model]
    if converted:
        models.append(converted_model(cfg, src, *converted))
    with torch.no_grad():
        for model in models:
            torch.testing.assert_close(
                model.forward_logits(images, ids, pad), expected, rtol=0,
                atol=1e-5)
            torch.testing.assert_close(
                model(images, samples, mode='tensor')['logits'],
                expected_from_texts, rtol=0, atol=1e-5)


def assert_padding_is_ignored(model, images) -> None:
    """``model.forward_logits`` of 2 ``images`` ignores pad tokens (1 =
    pad): junk ids in the padding or more padding leave the logits as they
    are; the opposite polarity does not."""
    ids, pad = padded_ids([6, 4], 6)
    wide, wide_pad = padded_ids([6, 4], 11)
    wide[:, :6] = ids
    wide[:, 6:] = torch.randint(4, VOCAB, (2, 5))
    wide[1, 4:] = torch.randint(4, VOCAB, (7, ))
    with torch.no_grad():
        short = model.forward_logits(images, ids, pad)
        padded = model.forward_logits(images, wide, wide_pad)
        flipped = model.forward_logits(images, wide, 1 - wide_pad)
    torch.testing.assert_close(padded, short, rtol=0, atol=1e-6)
    assert not torch.allclose(flipped, short, atol=1e-3)


def run_tool(*args, cwd, env: Optional[dict] = None, ok: bool = True) -> str:
    """Run a script with this Python (``env``: extra variables); its
    stdout + stderr (asserts success, or failure for ``ok=False``)."""
    # One intra-op thread: the demos' ops are tiny, and on a shared machine
    # more threads only wait for each other.
    env = dict(os.environ, OMP_NUM_THREADS='1', **(env or {}))
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env,
                            capture_output=True, text=True)
    out = result.stdout + result.stderr
    assert (result.returncode == 0) == ok, out[-3000:]
    return out


def run_readme_demo(task: str, cfg: str, cwd) -> str:
    """The README's demo commands for ``task`` in ``cwd``: make the data
    under data/demo_<det|seg>, train ``cfg`` for its epochs with
    tools/train.py, test the last checkpoint with tools/test.py. Returns
    the test log."""
    from mmengine.config import Config
    epochs = Config.fromfile(cfg).train_cfg.max_epochs
    data = dict(detection='data/demo_det', segmentation='data/demo_seg')
    run_tool(osp.join(ROOT, 'tools/misc/make_demo_data.py'), task, '--out',
             data[task], cwd=cwd)
    run_tool(osp.join(ROOT, 'tools/train.py'), cfg, '--work-dir', 'work',
             cwd=cwd)
    return run_tool(osp.join(ROOT, 'tools/test.py'), cfg,
                    f'work/epoch_{epochs}.pth', '--work-dir', 'work', cwd=cwd)



# c10d's gloo threads can be torn down while still joinable when a process
# finalises, after the run and destroy_process_group() went well (rarely,
# under load; pytorch/pytorch#179291 describes the mechanism).
EXIT_ABORT = 'terminate called without an active exception'


def run_dist_tool(script: str, *args, cwd, port: int,
                  env: Optional[dict] = None) -> str:
    """Run ``tools/<script>`` (dist_train.sh, dist_test.sh) with its
    ``args`` on gloo processes (``env``: extra variables); their stdout +
    stderr (asserts success).

    A rank aborting at interpreter exit counts as a success when nothing
    else failed: the output has that abort and no Python traceback.
    """
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(port),
               OMP_NUM_THREADS='1', **(env or {}))
    result = subprocess.run(['bash', osp.join(ROOT, 'tools', script), *args],
                            cwd=cwd, env=env, capture_output=True, text=True)
    out = result.stdout + result.stderr
    exit_abort = EXIT_ABORT in out and 'Traceback' not in out
    assert result.returncode == 0 or exit_abort, out[-4000:]
    return out


# BEiT v2's VQ-KD tokenizer: the official key layout and forward
# (unilm/beit2 modeling_vqkd.py, modeling_finetune.py, written out here).


def _official_vit_keys(arch: dict, in_chans: int, patch: int,
                       grid: int) -> Dict[str, tuple]:
    """Keys and shapes of the official ``VisionTransformer`` of VQ-KD
    (abs positions, mean pooling: ``fc_norm``, no layer scale, no head)."""
    D, F = arch['embed_dims'], arch['feedforward_channels']
    shapes = {
        'cls_token': (1, 1, D),
        'pos_embed': (1, grid * grid + 1, D),
        'patch_embed.proj.weight': (D, in_chans, patch, patch),
        'patch_embed.proj.bias': (D, ),
        'fc_norm.weight': (D, ),
        'fc_norm.bias': (D, ),
    }
    for i in range(arch['num_layers']):
        b = f'blocks.{i}.'
        shapes.update({
            b + 'norm1.weight': (D, ), b + 'norm1.bias': (D, ),
            b + 'attn.q_bias': (D, ), b + 'attn.v_bias': (D, ),
            b + 'attn.qkv.weight': (3 * D, D),
            b + 'attn.proj.weight': (D, D), b + 'attn.proj.bias': (D, ),
            b + 'norm2.weight': (D, ), b + 'norm2.bias': (D, ),
            b + 'mlp.fc1.weight': (F, D), b + 'mlp.fc1.bias': (F, ),
            b + 'mlp.fc2.weight': (D, F), b + 'mlp.fc2.bias': (D, ),
        })
    return shapes


def official_vqkd_state(arch: dict, img_size: int, num_embed: int,
                        code_dims: int, decoder_depth: int = 1,
                        decoder_out_dims: int = 24,
                        seed: int = 0) -> Dict[str, torch.Tensor]:
    """A random state dict in the layout of the official ``VQKD`` (encoder,
    decoder, task layers, quantizer with its statistics), with unit
    codebook rows and ``initted = 1``, as the released files hold."""
    grid = img_size // arch['patch_size']
    shapes = {
        'encoder.' + k: s
        for k, s in _official_vit_keys(arch, 3, arch['patch_size'],
                                       grid).items()
    }
    shapes.update({
        'decoder.' + k: s
        for k, s in _official_vit_keys(
            dict(arch, num_layers=decoder_depth), code_dims, 1,
            grid).items()
    })
    D = arch['embed_dims']
    for task, out in (('encode_task_layer', code_dims),
                      ('decode_task_layer', decoder_out_dims)):
        shapes.update({
            f'{task}.0.weight': (D, D), f'{task}.0.bias': (D, ),
            f'{task}.2.weight': (out, D), f'{task}.2.bias': (out, )
        })
    g = torch.Generator().manual_seed(seed)
    state = {
        k: (1 if 'norm' in k and k.endswith('weight') else 0) +
        (0.1 if 'norm' in k else 0.3) * torch.randn(s, generator=g)
        for k, s in shapes.items()
    }
    codebook = torch.nn.functional.normalize(
        torch.randn(num_embed, code_dims, generator=g), dim=-1)
    state.update({
        'quantize.cluster_size': torch.rand(num_embed, generator=g),
        'quantize.embedding.weight': codebook,
        'quantize.embedding.initted': torch.Tensor([True]),
        'quantize.embedding.cluster_size': torch.rand(num_embed, generator=g),
        'quantize.embedding.embed_avg': torch.randn(num_embed, code_dims,
                                                    generator=g),
    })
    return state


def official_vit_patch_tokens(state: Dict[str, torch.Tensor], prefix: str,
                              x: torch.Tensor, num_heads: int,
                              patch_size: int) -> torch.Tensor:
    """The official ``VisionTransformer.forward_features(x,
    return_patch_tokens=True)`` (with ``interpolate_pos_encoding``)."""
    import math
    F = torch.nn.functional

    def p(k):
        return state[prefix + k]

    B, nc, w, h = x.shape
    x = F.conv2d(x, p('patch_embed.proj.weight'), p('patch_embed.proj.bias'),
                 stride=patch_size).flatten(2).transpose(1, 2)
    x = torch.cat((p('cls_token').expand(B, -1, -1), x), dim=1)
    pos_embed = p('pos_embed')
    if x.shape[1] != pos_embed.shape[1]:
        N, dim = pos_embed.shape[1] - 1, x.shape[-1]
        w0, h0 = w // patch_size + 0.1, h // patch_size + 0.1
        patch_pos = F.interpolate(
            pos_embed[:, 1:].reshape(1, int(math.sqrt(N)), int(math.sqrt(N)),
                                     dim).permute(0, 3, 1, 2),
            scale_factor=(w0 / math.sqrt(N), h0 / math.sqrt(N)),
            mode='bicubic')
        patch_pos = patch_pos.permute(0, 2, 3, 1).view(1, -1, dim)
        pos_embed = torch.cat((pos_embed[:, 0].unsqueeze(0), patch_pos), 1)
    x = x + pos_embed
    D = x.shape[-1]
    i = 0
    while f'{prefix}blocks.{i}.norm1.weight' in state:
        b = f'blocks.{i}.'
        y = F.layer_norm(x, (D, ), p(b + 'norm1.weight'), p(b + 'norm1.bias'),
                         eps=1e-6)
        qkv_bias = torch.cat((p(b + 'attn.q_bias'),
                              torch.zeros_like(p(b + 'attn.v_bias')),
                              p(b + 'attn.v_bias')))
        qkv = F.linear(y, p(b + 'attn.qkv.weight'), qkv_bias)
        qkv = qkv.reshape(B, x.shape[1], 3, num_heads,
                          -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = q * (D // num_heads)**-0.5
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        y = (attn @ v).transpose(1, 2).reshape(B, x.shape[1], -1)
        x = x + F.linear(y, p(b + 'attn.proj.weight'), p(b + 'attn.proj.bias'))
        y = F.layer_norm(x, (D, ), p(b + 'norm2.weight'), p(b + 'norm2.bias'),
                         eps=1e-6)
        y = F.gelu(F.linear(y, p(b + 'mlp.fc1.weight'), p(b + 'mlp.fc1.bias')))
        y = F.linear(y, p(b + 'mlp.fc2.weight'), p(b + 'mlp.fc2.bias'))
        x = x + y
        i += 1
    return F.layer_norm(x[:, 1:], (D, ), p('fc_norm.weight'),
                        p('fc_norm.bias'), eps=1e-6)


def official_vqkd_codes(state: Dict[str, torch.Tensor], images01: torch.Tensor,
                        num_heads: int, patch_size: int):
    """The official ``VQKD.get_codebook_indices`` of images in [0, 1]
    (``pre_process`` 'default', encoder, task layer, l2 norm, nearest code
    by the quantizer's distance): (encoder patch features, codes (B, N))."""
    F = torch.nn.functional
    data = images01
    if data.max() <= 1.:
        data = data * 255.
    data = data / 127.5 - 1.0
    feats = official_vit_patch_tokens(state, 'encoder.', data, num_heads,
                                      patch_size)
    z = F.linear(
        torch.tanh(
            F.linear(feats, state['encode_task_layer.0.weight'],
                     state['encode_task_layer.0.bias'])),
        state['encode_task_layer.2.weight'], state['encode_task_layer.2.bias'])
    z = F.normalize(z, p=2, dim=-1).reshape(-1, z.shape[-1])
    weight = state['quantize.embedding.weight']
    d = z.pow(2).sum(dim=1, keepdim=True) + weight.pow(2).sum(dim=1) - 2 * \
        torch.einsum('bd,nd->bn', z, weight)
    return feats, torch.argmin(d, dim=1).view(images01.shape[0], -1)


def kmeans_vqkd_file(path: str, image_paths, arch: dict, img_size: int,
                     num_embed: int, code_dims: int, seed: int = 0,
                     iters: int = 20) -> str:
    """A VQ-KD tokenizer file in the released layout (``{'model': state}``)
    whose codes say something about ``image_paths``: a random encoder
    (:func:`official_vqkd_state`, its position table zeroed, so that a
    code depends on the patch and its context, not on the position alone)
    and a codebook set by spherical k-means on the l2-normalised codes'
    inputs of those images (RGB, ``pixel / 127.5 - 1``). A stand-in for a
    trained tokenizer."""
    import numpy as np
    from PIL import Image

    from beit3_mm.models.selfsup import VQKDTokenizer
    F = torch.nn.functional
    state = official_vqkd_state(arch, img_size, num_embed, code_dims,
                                seed=seed)
    state['encoder.pos_embed'].zero_()
    tokenizer = VQKDTokenizer(arch=arch, img_size=img_size,
                              num_embed=num_embed, embed_dims=code_dims)
    tokenizer.load_state_dict(
        {k: v for k, v in state.items() if not k.startswith('decode')})
    pixels = torch.stack([
        torch.from_numpy(np.asarray(Image.open(p).convert('RGB')).copy())
        for p in image_paths
    ]).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        z = F.normalize(tokenizer.encode_features(pixels / 127.5 - 1),
                        dim=-1).flatten(0, 1)
    g = torch.Generator().manual_seed(seed)
    centres = z[torch.randperm(len(z), generator=g)[:num_embed]
                if len(z) >= num_embed else torch.randint(
                    len(z), (num_embed, ), generator=g)]
    for _ in range(iters):
        assign = (z @ centres.T).argmax(1)
        sums = torch.zeros_like(centres).index_add_(0, assign, z)
        used = torch.bincount(assign, minlength=num_embed) > 0
        centres = torch.where(used[:, None], F.normalize(sums, dim=-1),
                              centres)
    state['quantize.embedding.weight'] = centres
    torch.save({'model': state}, path)
    return str(path)


PRETRAIN_DEMO = osp.join(
    ROOT, 'configs/beit3/pretrain',
    'beit3-tiny-p8_pretrain_1xb48-1200it_demo-mixed.py')
CLS_DEMO = osp.join(ROOT, 'configs/beit3/classification',
                    'beit3-tiny-p8_1xb32-40e_demo-shapes.py')
VQKD_DEMO = osp.join(ROOT, 'configs/beit3/vqkd',
                     'vqkd-tiny-p8-d1_demo-teacher_1xb32-20e_demo-shapes.py')
# the VQ-KD demo's run and its last checkpoint, relative to its cwd
VQKD_DEMO_WORK = 'work_dirs/' + osp.splitext(osp.basename(VQKD_DEMO))[0]
VQKD_DEMO_CKPT = VQKD_DEMO_WORK + '/epoch_20.pth'


def run_vqkd_demo(cwd) -> str:
    """The README commands of the VQ-KD demo (its config's header) in
    ``cwd``: the classification demo's data and run (the teacher, where
    the VQ-KD config reads it), the pretraining demo's data, the VQ-KD
    demo (in ``VQKD_DEMO_WORK``) and the converter to the pretraining
    demo's tokenizer file, ``data/demo_vqkd.pth``. Returns the
    classification run's log."""
    make = osp.join(ROOT, 'tools/misc/make_demo_data.py')
    train = osp.join(ROOT, 'tools/train.py')
    run_tool(make, 'classification', '--out', 'data/demo_cls', cwd=cwd)
    log = run_tool(train, CLS_DEMO, cwd=cwd)
    run_tool(make, 'pretrain', '--out', 'data/demo_pretrain', cwd=cwd)
    run_tool(train, VQKD_DEMO, cwd=cwd)
    run_tool(osp.join(ROOT, 'tools/model_converters/vqkd_to_official.py'),
             VQKD_DEMO_CKPT, 'data/demo_vqkd.pth', cwd=cwd)
    return log


def demo_vqkd_file(cwd: str) -> str:
    """:func:`kmeans_vqkd_file` for the pretraining demo config run in
    ``cwd``: its tokenizer arch and codebook, set on the demo images under
    its data root, written to its ``vqkd_checkpoint``: a stand-in for the
    VQ-KD demo's trained tokenizer (:func:`run_vqkd_demo`) where a test
    needs the file, not its codes, in a second."""
    import glob

    from mmengine.config import Config
    cfg = Config.fromfile(PRETRAIN_DEMO)
    target = cfg.model.target_generator
    images = sorted(
        glob.glob(osp.join(cwd, cfg.data_root, 'images', '*.png')) +
        glob.glob(osp.join(cwd, cfg.data_root, 'pairs/images', '*.png')))
    path = osp.join(cwd, cfg.vqkd_checkpoint)
    os.makedirs(osp.dirname(path), exist_ok=True)
    return kmeans_vqkd_file(path, images, dict(target.arch), target.img_size,
                            target.num_embed, target.embed_dims)
