"""``MixedPrecisionOptimWrapper``: what ``tools/train.py --amp`` selects."""
import pytest
import torch
import torch.nn as nn
from mmengine.registry import OPTIM_WRAPPERS

import beit3_mm  # noqa: F401

pytestmark = pytest.mark.skipif(torch.cuda.is_available(),
                                reason='checks the CPU path')


def build(**kwargs):
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 2))
    wrapper = OPTIM_WRAPPERS.build(
        dict(type='MixedPrecisionOptimWrapper',
             optimizer=torch.optim.AdamW(model.parameters(), lr=1e-2),
             **kwargs))
    return model, wrapper


def test_cpu_step_autocasts_to_bf16_with_fp32_master_weights():
    model, wrapper = build()
    x = torch.randn(4, 8)
    before = [p.detach().clone() for p in model.parameters()]
    with wrapper.optim_context(model):
        out = model(x)
        assert out.dtype == torch.bfloat16  # the matmuls ran in bf16
        loss = out.float().pow(2).mean()
    wrapper.update_params(loss)
    for p, b in zip(model.parameters(), before):
        assert p.dtype == torch.float32
        assert p.grad is None or p.grad.dtype == torch.float32
        assert not torch.equal(p, b)  # the step updated the weights
    state = wrapper.state_dict()
    assert 'loss_scaler' not in state
    wrapper.load_state_dict(dict(state, loss_scaler={'scale': 1.}))


def test_grads_are_fp32():
    model, wrapper = build()
    with wrapper.optim_context(model):
        loss = model(torch.randn(4, 8)).float().sum()
    wrapper.backward(loss)
    assert all(p.grad.dtype == torch.float32 for p in model.parameters())


def test_fp16_on_the_cpu_is_refused():
    with pytest.raises(ValueError, match="use dtype='bfloat16'"):
        build(dtype='float16')


def test_amp_flag_selects_the_wrapper():
    import argparse
    import os.path as osp
    import sys

    from helpers import ROOT
    from mmengine.config import Config
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    from train import apply_train_args
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper')))
    apply_train_args(cfg, argparse.Namespace(
        amp=True, resume=None, auto_scale_lr=False))
    assert cfg.optim_wrapper.type == 'MixedPrecisionOptimWrapper'
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper'),
                      strategy=dict(type='BEiT3DeepSpeedStrategy')))
    apply_train_args(cfg, argparse.Namespace(
        amp=True, resume=None, auto_scale_lr=False))
    assert cfg.strategy.bf16.enabled


@pytest.mark.parametrize('mask', [None, 'bool', 'bias'])
def test_cpu_bf16_attention_matches_sdpa(mask):
    """Under CPU bf16 autocast, short attention runs as bf16 matrix products
    (faster than SDPA's bf16 CPU kernel): within bf16 rounding of float64
    SDPA, masked keys ignored, float32 gradients of float32 inputs; outside
    autocast it is SDPA bit for bit."""
    import torch.nn.functional as F

    from beit3_mm.models.layers.attention import attention
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 17, 8, requires_grad=True)
               for _ in range(3))
    keep = torch.rand(2, 1, 17, 17) > 0.3
    keep[..., 0] = True  # every query keeps a key
    attn_mask = dict(bool=keep, bias=torch.randn(2, 3, 17, 17)).get(mask)
    ref = F.scaled_dot_product_attention(
        q.double(), k.double(), v.double(),
        attn_mask=attn_mask if mask != 'bias' else attn_mask.double())
    assert torch.equal(attention(q, k, v, attn_mask),
                       F.scaled_dot_product_attention(q, k, v, attn_mask))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = attention(q, k, v, attn_mask)
        assert out.dtype == torch.bfloat16
        if mask == 'bool':  # a masked key's value does not matter
            keys = keep[0, 0, 0]
            v2 = v.detach().clone()
            v2[:, :, ~keys] = 1e3
            assert torch.equal(attention(q, k, v2, keys),
                               attention(q, k, v, keys))
    err = (out.double() - ref).norm() / ref.norm()
    assert err < 1e-2, err
    out.float().sum().backward()
    assert all(t.grad.dtype == torch.float32 for t in (q, k, v))


def tiny_backbone(seed=0):
    from helpers import TINY, TINY_IMG, VOCAB, randomize_

    from beit3_mm.models import BEiT3
    model = BEiT3(arch=TINY, img_size=TINY_IMG, vocab_size=VOCAB,
                  out_type='raw').eval()
    randomize_(model, seed)
    return model


def tiny_inputs():
    from helpers import TINY_IMG, VOCAB
    g = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, TINY_IMG, TINY_IMG, generator=g)
    text = torch.randint(0, VOCAB, (2, 5), generator=g)
    pad = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    return images, text, pad


def bf16_inference(model, inputs):
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16):
        return model.encode(*inputs)


def test_cpu_bf16_inference_fuses_epilogues_and_casts_weights_once():
    """Without autograd, bf16 autocast runs every layer linear as one oneDNN
    product with its bias (and fc1's GELU) on the float32 accumulator:
    within bf16 rounding of float32, as the autograd path is; a second
    forward casts no weight (the bf16 copies are kept)."""
    from torch.profiler import profile

    from helpers import TINY
    model, inputs = tiny_backbone(), tiny_inputs()
    with torch.no_grad():
        ref = model.encode(*inputs)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        trained = model.encode(*inputs)
    out = bf16_inference(model, inputs)
    for bf16 in (out, trained):
        err = (bf16.float() - ref).norm() / ref.norm()
        assert err < 1e-2, err
    assert not torch.equal(out, trained)  # another path
    with profile(record_shapes=True) as prof:
        assert torch.equal(bf16_inference(model, inputs), out)
    ops = {e.key: e.count for e in prof.key_averages()}
    layers, experts = TINY['num_layers'], 2
    # qkv, out, fc1 (+ GELU), fc2 of each expert of each layer
    assert ops['mkldnn::_linear_pointwise'] == 4 * layers * experts
    assert not {'aten::gelu', 'aten::addmm', 'aten::linear'} & set(ops)
    D, F = TINY['embed_dims'], TINY['feedforward_channels']
    weights = [[3 * D, D], [D, D], [F, D], [D, F]]
    casts = [e for e in prof.events() if e.name == 'aten::_to_copy'
             and e.input_shapes and e.input_shapes[0] in weights]
    assert not casts


def test_bf16_weight_cache_follows_parameter_changes():
    """The kept bf16 weights are rebuilt when a parameter changes in place
    (optimizer step, load_state_dict) or is replaced (``.data``), on
    ``eval()`` (after a write through ``.data``), also for weights built
    under inference_mode (cast on every call): the output is
    that of a fresh copy of the model (a deep copy carries no cache)."""
    import copy
    model, inputs = tiny_backbone(0), tiny_inputs()

    def check_fresh(before):
        out = bf16_inference(model, inputs)
        assert not torch.equal(out, before)
        assert torch.equal(out, bf16_inference(copy.deepcopy(model), inputs))
        return out

    out = bf16_inference(model, inputs)
    model.load_state_dict(tiny_backbone(1).state_dict())
    out = check_fresh(out)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    out = check_fresh(out)
    fc1 = model.encoder.layers[1].ffn.A.fc1
    fc1.weight.data = torch.randn_like(fc1.weight)
    out = check_fresh(out)
    with torch.no_grad():  # as EMAHook swaps weights: no version bump
        fc1.weight.data.copy_(torch.randn_like(fc1.weight))
    model.eval()  # what mmengine's loops call before each validation
    out = check_fresh(out)
    with torch.inference_mode():
        model = tiny_backbone(0)
        out = bf16_inference(model, inputs)
        model.load_state_dict(tiny_backbone(1).state_dict())
        check_fresh(out)


def test_bf16_weight_cache_keeps_no_copy_of_sharded_weights():
    """Weights that are views into a flat buffer (FSDP's) or DeepSpeed
    ZeRO-3 parameters are cast on every call: no copy is kept, and the
    output is that of a plain cached linear."""
    from beit3_mm.models.layers.cpu_bf16 import _CACHE, AutocastLinear
    x = torch.randn(2, 5, 16)
    plain, flat, zero3 = (AutocastLinear(16, 8) for _ in range(3))
    flat.load_state_dict(plain.state_dict())
    zero3.load_state_dict(plain.state_dict())
    buffer = torch.cat([flat.weight.detach().flatten(),
                        flat.bias.detach(), torch.zeros(3)])
    flat.weight.data = buffer[:128].view(8, 16)
    flat.bias.data = buffer[128:136]
    zero3.weight.ds_id = zero3.bias.ds_id = 0
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        outs = [m(x) for m in (plain, flat, zero3)]
    assert plain in _CACHE
    assert flat not in _CACHE and zero3 not in _CACHE
    assert torch.equal(outs[1], outs[2])
    torch.testing.assert_close(outs[0].float(), outs[1].float(), rtol=1e-2,
                               atol=1e-2)
