"""Per-GPU memory of the weights, gradients and AdamW states of BEiT-3
models under DDP, DeepSpeed ZeRO-2 / ZeRO-3 and FSDP, as a markdown table.

    python tools/analysis_tools/memory_table.py [--archs base large giant] \
        [--gpus 8] [--img-size 224] [--vision-only] [--config CONFIG]

The models are built on the ``meta`` device (no memory, no init), so the
parameter counts are those of the code: ``BEiT3(arch)`` with its language
half (the pretraining / vision-language backbone) unless ``--vision-only``,
or the whole model of ``--config``. What each strategy keeps per GPU, for
Phi trainable parameters on N GPUs, as the strategy configs of
``configs/_base_/strategies`` set them up:

=========  ==========================  =============  =====================
strategy   weights                     gradients      AdamW
=========  ==========================  =============  =====================
DDP        fp32, full: 4 Phi           fp32: 4 Phi    2 fp32 states: 8 Phi
ZeRO-2     bf16, full: 2 Phi           bf16: 2 Phi/N  master + 2 states:
                                                      12 Phi/N
ZeRO-3     bf16: 2 Phi/N               bf16: 2 Phi/N  12 Phi/N
FSDP       fp32 shard: 4 Phi/N         fp32: 4 Phi/N  8 Phi/N
=========  ==========================  =============  =====================

DDP (with ``--amp``: bf16 autocast, fp32 weights) needs no master copy;
ZeRO keeps bf16 weights and fp32 master weights in the optimizer; FSDP's
bf16 mixed precision computes with bf16 copies of the fp32 shard, gathered
one unit at a time. Frozen parameters count as weights only. Not counted:
activations, DDP's gradient buckets, the transiently gathered units of
ZeRO-3 / FSDP, and the padding of the shards (< N elements per tensor).
"""
import argparse
from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch
import torch.nn as nn

GIB = 1 << 30
STRATEGIES = ('DDP', 'ZeRO-2', 'ZeRO-3', 'FSDP')
# bytes per element of (weights, gradients, optimizer) and whether each is
# sharded over the GPUs
LAYOUT: Dict[str, Tuple[Tuple[int, bool], ...]] = {
    'DDP': ((4, False), (4, False), (8, False)),
    'ZeRO-2': ((2, False), (2, True), (12, True)),
    'ZeRO-3': ((2, True), (2, True), (12, True)),
    'FSDP': ((4, True), (4, True), (8, True)),
}


@dataclass
class Memory:
    """Bytes per GPU."""
    weights: float
    gradients: float
    optimizer: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer


def count_parameters(model: nn.Module) -> Tuple[int, int]:
    """(all, trainable) parameter elements."""
    params = list(model.parameters())
    return (sum(p.numel() for p in params),
            sum(p.numel() for p in params if p.requires_grad))


def memory_per_gpu(num_params: int, num_trainable: int, strategy: str,
                   gpus: int) -> Memory:
    """Weights, gradients and AdamW state bytes per GPU (see the module
    docstring)."""
    if strategy not in LAYOUT:
        raise ValueError(f'strategy {strategy!r} is not one of {STRATEGIES}')
    if gpus < 1:
        raise ValueError(f'gpus={gpus} must be >= 1')
    sizes = []
    for (nbytes, sharded), numel in zip(
            LAYOUT[strategy], (num_params, num_trainable, num_trainable)):
        sizes.append(nbytes * numel / (gpus if sharded else 1))
    return Memory(*sizes)


def build_on_meta(arch: str, img_size: int, vision_only: bool) -> nn.Module:
    from beit3_mm.models import BEiT3
    with torch.device('meta'):
        return BEiT3(arch=arch, img_size=img_size,
                     with_language=not vision_only)


def build_config_model(path: str) -> nn.Module:
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from beit3_mm.registry import MODELS
    cfg = Config.fromfile(path)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    with torch.device('meta'):
        return MODELS.build(cfg.model)


def table(models: List[Tuple[str, nn.Module]], gpus: int) -> str:
    """The markdown table: one row per model and strategy, GiB per GPU."""
    lines = [
        f'| model | params | strategy | weights | gradients | AdamW '
        f'| total / GPU ({gpus} GPUs) |', '|' + '---|' * 7
    ]
    for name, model in models:
        num_params, num_trainable = count_parameters(model)
        for strategy in STRATEGIES:
            m = memory_per_gpu(num_params, num_trainable, strategy, gpus)
            cells = [f'{b / GIB:.2f}' for b in
                     (m.weights, m.gradients, m.optimizer, m.total)]
            lines.append(f'| {name} | {num_params / 1e6:.0f}M | {strategy} | '
                         + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Per-GPU memory of weights, gradients and AdamW states')
    parser.add_argument(
        '--archs', nargs='+', default=['base', 'large', 'giant'])
    parser.add_argument('--gpus', type=int, default=8)
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument(
        '--vision-only',
        action='store_true',
        help='build the vision half only (classification, detection)')
    parser.add_argument(
        '--config', help='measure the whole model of this config instead')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.config:
        models = [(args.config.rsplit('/', 1)[-1][:-3],
                   build_config_model(args.config))]
    else:
        half = 'vision' if args.vision_only else 'vision + language'
        models = [(f'BEiT-3 {arch} ({half})',
                   build_on_meta(arch, args.img_size, args.vision_only))
                  for arch in args.archs]
    print(table(models, args.gpus))


if __name__ == '__main__':
    main()
