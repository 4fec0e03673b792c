"""tools/analysis_tools/memory_table.py: its arithmetic against the tensors
of a tiny model, its optimizer and a gradient step."""
import importlib.util
import os.path as osp

import pytest
import torch

from beit3_mm.models import BEiT3
from helpers import ROOT, TINY, TINY_IMG, VOCAB


def load_tool():
    path = osp.join(ROOT, 'tools/analysis_tools/memory_table.py')
    spec = importlib.util.spec_from_file_location('memory_table', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def test_ddp_arithmetic_matches_the_tensors():
    tool = load_tool()
    torch.manual_seed(0)
    model = BEiT3(arch=TINY, img_size=TINY_IMG, with_language=False,
                  out_type='cls_token')
    num_params, num_trainable = tool.count_parameters(model)
    assert num_params == sum(p.numel() for p in model.parameters())
    # the frozen mask token: a weight without gradient or AdamW state
    assert num_params - num_trainable == TINY['embed_dims']

    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad])
    model(torch.randn(2, 3, TINY_IMG, TINY_IMG))[0].sum().backward()
    optimizer.step()
    states = [t for s in optimizer.state.values() for k, t in s.items()
              if k != 'step']
    memory = tool.memory_per_gpu(num_params, num_trainable, 'DDP', 8)
    assert memory.weights == nbytes(model.parameters())
    assert memory.gradients == nbytes(
        p.grad for p in model.parameters() if p.grad is not None)
    assert memory.optimizer == nbytes(states)
    assert memory.total == memory.weights + memory.gradients + \
        memory.optimizer


def test_sharded_strategies_divide_by_the_gpus():
    tool = load_tool()
    phi, n = 1000, 4
    expected = {
        'ZeRO-2': (2 * phi, 2 * phi / n, 12 * phi / n),
        'ZeRO-3': (2 * phi / n, 2 * phi / n, 12 * phi / n),
        'FSDP': (4 * phi / n, 4 * phi / n, 8 * phi / n),
    }
    for strategy, sizes in expected.items():
        m = tool.memory_per_gpu(phi, phi, strategy, n)
        assert (m.weights, m.gradients, m.optimizer) == sizes, strategy
    # a bf16 copy (ZeRO's weights) and fp32 master + 2 states per element
    model = BEiT3(arch=TINY, img_size=TINY_IMG, vocab_size=VOCAB)
    num_params, _ = tool.count_parameters(model)
    m = tool.memory_per_gpu(num_params, num_params, 'ZeRO-2', 1)
    assert m.weights == nbytes(model.to(torch.bfloat16).parameters())
    with pytest.raises(ValueError, match='not one of'):
        tool.memory_per_gpu(phi, phi, 'ColossalAI', n)


def test_meta_build_counts_what_the_real_model_holds():
    tool = load_tool()
    with torch.device('meta'):
        meta = BEiT3(arch=TINY, img_size=TINY_IMG, vocab_size=VOCAB)
    real = BEiT3(arch=TINY, img_size=TINY_IMG, vocab_size=VOCAB)
    assert tool.count_parameters(meta) == tool.count_parameters(real)
    rows = tool.table([('tiny', real)], gpus=2).splitlines()
    assert len(rows) == 2 + len(tool.STRATEGIES)
    assert '| tiny |' in rows[2] and '| DDP |' in rows[2]
