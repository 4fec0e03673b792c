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
