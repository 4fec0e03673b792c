"""Benchmark the dense-prediction backbones of BEiT-3 and print the ratios in
one run.

    python tools/analysis_tools/benchmark_dense.py [--arch base] \
        [--size 1024] [--adapter-size 512] [--modes forward train] \
        [--comparisons global cp rel_pos adapter] [--iters 3] [--warmup 1] \
        [--skip-memory] [--device cuda]

Two comparisons, batch 1, float32, random weights:

- ``BEiT3Dense`` at ``--size`` (ViTDet's 1024): window attention (14, global
  attention in every quarter's last layer) vs global attention in every
  layer vs window attention with activation checkpointing (``with_cp``) vs
  window attention with ViTDet's relative position terms (``use_rel_pos``;
  their bias is a float mask, so the global layers hold an N x N tensor
  per head).
- ``BEiT3Adapter`` (ViT-Adapter, SyncBN replaced by BN) vs the plain
  ``BEiT3Dense`` it drives (global attention, as the adapter's default),
  both at ``--adapter-size`` (512).

Each model is measured in two modes: ``forward`` (inference,
``torch.inference_mode``) and ``train`` (a forward and the backward of the
sum of the outputs' means, what a training step costs; activation
checkpointing only acts here, so ``window+cp`` is measured in this mode
only). Timings and peak memory come from the helpers of ``benchmark.py``
and follow its rules: median of ``--iters`` calls after ``--warmup``, the
models of one comparison interleaved; the peak is the call's own (above what
is live before it: weights and input excluded), measured in a fresh
subprocess per model and mode, on the CPU from the kernel's peak RSS
(``VmHWM``), on CUDA from ``torch.cuda.max_memory_allocated``. Ratios are
first / second of each comparison: below 1 is faster or less memory.
"""
import argparse
import json
import os
import subprocess
import sys
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn as nn
from benchmark import (HEADER, MIB, MMAP_THRESHOLD, Row, forward_peak_bytes,
                       format_row, row_cells, time_forwards)

from beit3_mm.models import BEiT3Adapter, BEiT3Dense

Tensor = torch.Tensor
MODES = ('forward', 'train')
# name: (class, size argument, constructor arguments, modes)
VARIANTS: Dict[str, Tuple[type, str, dict, Tuple[str, ...]]] = {
    'window': (BEiT3Dense, 'size', dict(window_size=14), MODES),
    'global': (BEiT3Dense, 'size', dict(window_size=0), MODES),
    'window+cp': (BEiT3Dense, 'size', dict(window_size=14, with_cp=True),
                  ('train', )),
    'window+rel_pos': (BEiT3Dense, 'size',
                       dict(window_size=14, use_rel_pos=True), MODES),
    'adapter': (BEiT3Adapter, 'adapter_size',
                dict(window_size=0, norm_cfg=dict(type='BN')), MODES),
    'plain': (BEiT3Dense, 'adapter_size', dict(window_size=0), MODES),
}
COMPARISONS = {
    'global': ('global', 'window'),
    'cp': ('window+cp', 'window'),
    'rel_pos': ('window+rel_pos', 'window'),
    'adapter': ('adapter', 'plain'),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Benchmark BEiT3Dense (window / global / with_cp) and '
        'BEiT3Adapter vs BEiT3Dense')
    parser.add_argument('--arch', choices=['base', 'large'], default='base')
    parser.add_argument('--size', type=int, default=1024,
                        help='input side of the window/global/with_cp runs')
    parser.add_argument('--adapter-size', type=int, default=512,
                        help='input side of the adapter vs plain runs')
    parser.add_argument(
        '--modes', nargs='+', choices=MODES, default=list(MODES))
    parser.add_argument(
        '--comparisons',
        nargs='+',
        choices=list(COMPARISONS),
        default=list(COMPARISONS))
    parser.add_argument('--iters', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--skip-memory', action='store_true',
                        help='time only')
    parser.add_argument(
        '--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--memory-worker', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.iters < 1 or args.warmup < 0:
        parser.error('--iters must be >= 1, --warmup >= 0')
    for side in (args.size, args.adapter_size):
        if side % 32:
            parser.error(f'input sizes must divide by 32, got {side}')
    return args


def build(name: str, args: argparse.Namespace) -> Tuple[nn.Module, Tensor]:
    """A variant with PyTorch's default random init, and its input."""
    cls, size_arg, kwargs, _ = VARIANTS[name]
    torch.manual_seed(0)
    model = cls(arch=args.arch, **kwargs).to(args.device)
    size = getattr(args, size_arg)
    return model, torch.randn(1, 3, size, size, device=args.device)


def step(model: nn.Module, images: Tensor, mode: str) -> Callable[[], Tensor]:
    """One inference forward, or one forward + backward (grads freed first,
    so every call starts alike)."""

    def forward() -> Tensor:
        model.eval()
        with torch.inference_mode():
            return model(images)[0]

    def train() -> Tensor:
        model.train()
        with torch.inference_mode(False), torch.enable_grad():
            model.zero_grad(set_to_none=True)
            loss = sum(out.float().mean() for out in model(images))
            loss.backward()
        return loss.detach()

    return forward if mode == 'forward' else train


def memory_worker(args: argparse.Namespace) -> None:
    """Subprocess entry: print one variant's peak in one mode as JSON."""
    name, mode = args.memory_worker.split(':')
    model, images = build(name, args)
    peak = forward_peak_bytes(step(model, images, mode),
                              torch.device(args.device))
    print(json.dumps({'peak_bytes': peak}))


def peak_mib(name: str, mode: str, args: argparse.Namespace) -> float:
    cmd = [
        sys.executable,
        os.path.abspath(__file__), '--arch', args.arch, '--size',
        str(args.size), '--adapter-size',
        str(args.adapter_size), '--device', args.device, '--memory-worker',
        f'{name}:{mode}'
    ]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD))
    print(f'[memory] {name} {mode} (subprocess) ...', flush=True)
    result = subprocess.run(
        cmd, env=env, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(
        result.stdout.strip().splitlines()[-1])['peak_bytes'] / MIB


def compare(first: str, second: str, args: argparse.Namespace) -> List[Row]:
    """Time (interleaved) and peak memory of two variants, per mode."""
    modes = [
        m for m in args.modes
        if all(m in VARIANTS[n][3] for n in (first, second))
    ]
    if not modes:
        return []
    models = {name: build(name, args) for name in (first, second)}
    rows = []
    for mode in modes:
        size = getattr(args, VARIANTS[first][1])
        title = f'{first} vs {second} @{size} {mode}'
        print(f'[{title}] timing ...', flush=True)
        fns = {n: step(*models[n], mode) for n in (first, second)}
        timings = time_forwards(fns, args.iters, args.warmup,
                                torch.device(args.device))
        mode_rows = [
            Row(f'{title} time', 's', timings[first][0], timings[second][0])
        ]
        if not args.skip_memory:
            mode_rows.append(
                Row(f'{title} peak memory', 'MiB',
                    peak_mib(first, mode, args),
                    peak_mib(second, mode, args)))
        for row in mode_rows:
            print(f'[{row.name}] {format_row(row)}', flush=True)
        rows += mode_rows
    return rows


def print_table(rows: List[Row], args: argparse.Namespace) -> None:
    cells = [HEADER] + [row_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines = [
        '  '.join(c.ljust(w) for c, w in zip(line, widths)).rstrip()
        for line in cells
    ]
    lines.insert(1, '-' * len(lines[0]))
    print(f'\nBEiT-3 {args.arch} dense backbones on {args.device} (batch 1, '
          f'median of {args.iters} after {args.warmup} warm-up; "ours" is '
          f'the first of each comparison, "reference" the second)')
    print('\n'.join(lines))


def main() -> None:
    args = parse_args()
    if args.memory_worker:
        memory_worker(args)
        return
    rows = []
    for name in args.comparisons:
        rows += compare(*COMPARISONS[name], args)
    print_table(rows, args)


if __name__ == '__main__':
    main()
