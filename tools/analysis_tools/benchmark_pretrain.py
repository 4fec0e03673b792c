"""Benchmark a BEiT-3 pretraining step against mmpretrain's BEiT v2 step.

    python tools/analysis_tools/benchmark_pretrain.py [--batch-size 8] \
        [--iters 5] [--warmup 2] [--with-cp] [--skip-memory] [--device cuda]

One step is the loss forward and its backward on the same image-only batch
(ViT-B/16, 224, drop path 0.1, fp32), the visual tokenizer included on both
sides:

- ours: ``BEiT3Pretrain`` (base; images only: masked image modeling, 78 of
  196 patches masked block-wise, drawn inside the step) with the frozen
  ``VQKDTokenizer`` (ViT-B/16) computing the targets. Its language half
  (experts, ``mlm_head``) takes no part in such a batch and gets no
  gradient.
- mmpretrain: ``BEiT`` with ``BEiTPretrainViT``, ``BEiTV2Neck`` and
  ``BEiTV2Head`` and its ``VQKD`` target generator, built from
  mmpretrain's ``beitv2_beit-base-p16_8xb256-amp-coslr-300e_in1k.py``
  (drop path set to 0.1); 75 patches masked (BEiT v2's setting), the masks
  made before the step (mmpretrain draws them in the data pipeline). Its
  ``VQKD`` updates its codebook by EMA in training mode, as it does there.

Both tokenizers start from random weights with a set codebook (no file
needed), the student from its own init. Timing, interleaving and peak
memory follow ``benchmark.py``: median of ``--iters`` steps after
``--warmup``, the two models in turn within each round; the peak is the
step's own, gradients included (above the weights and the batch), each
model measured in a fresh subprocess (CPU: the kernel's peak RSS,
``VmHWM``; CUDA: ``torch.cuda.max_memory_allocated``). Ratios are
ours / mmpretrain: above 1 is faster for throughput, below 1 is less
memory.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Callable, Tuple

import torch
from benchmark import (HEADER, MIB, MMAP_THRESHOLD, Row, format_row,
                       forward_peak_bytes, row_cells, time_forwards)

IMG_SIZE = 224
GRID = IMG_SIZE // 16
BEITV2_MASKED = 75  # mmpretrain's BEiT v2 pipeline: BEiTMaskGenerator
MODELS = ('ours', 'mmpretrain')
MMPRETRAIN_CONFIG = 'beitv2/beitv2_beit-base-p16_8xb256-amp-coslr-300e_in1k.py'


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument(
        '--with-cp', action='store_true',
        help='activation checkpointing in ours (the pretraining configs)')
    parser.add_argument('--skip-memory', action='store_true')
    parser.add_argument(
        '--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--memory-worker', choices=MODELS,
                        help=argparse.SUPPRESS)
    return parser.parse_args()


def set_codebook_(quantizer: torch.nn.Module) -> None:
    """Random unit codes, marked as set (as a loaded file would be)."""
    emb = quantizer.embedding
    with torch.no_grad():
        emb.weight.copy_(
            torch.nn.functional.normalize(torch.randn_like(emb.weight),
                                          dim=-1))
        emb.initted.fill_(True)


def build_ours(args: argparse.Namespace, workdir: str) -> torch.nn.Module:
    from mmengine.registry import MODELS as REGISTRY

    import beit3_mm  # noqa: F401
    from beit3_mm.demo.shapes import train_demo_tokenizer
    spm = train_demo_tokenizer(['a red circle left of a blue square'] * 20,
                               os.path.join(workdir, 'bench.spm'), 40)
    model = REGISTRY.build(
        dict(
            type='BEiT3Pretrain',
            backbone=dict(
                arch='base', img_size=IMG_SIZE, drop_path_rate=0.1,
                with_cp=args.with_cp),
            target_generator=dict(type='VQKDTokenizer', arch='base',
                                  img_size=IMG_SIZE),
            tokenizer=dict(type='BEiT3Tokenizer', name_or_path=spm)))
    model.init_weights()
    set_codebook_(model.target_generator.quantize)
    return model


def build_mmpretrain() -> torch.nn.Module:
    import mmpretrain
    from mmengine.config import Config
    from mmpretrain.registry import MODELS as REGISTRY
    cfg = Config.fromfile(
        os.path.join(
            os.path.dirname(mmpretrain.__file__), '.mim', 'configs',
            MMPRETRAIN_CONFIG)).model
    cfg.backbone.drop_path_rate = cfg.neck.drop_path_rate = 0.1
    cfg.target_generator.init_cfg = None
    model = REGISTRY.build(cfg)
    model.init_weights()
    set_codebook_(model.target_generator.quantize)
    return model


def build(name: str, args: argparse.Namespace,
          workdir: str) -> Tuple[torch.nn.Module, Callable[[], torch.Tensor]]:
    """The model (training mode, on the device) and its step on one fixed
    batch of student images (and, for mmpretrain, tokenizer images and
    masks)."""
    from mmpretrain.structures import DataSample
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(args.batch_size, 3, IMG_SIZE, IMG_SIZE,
                        generator=g).mul(2).sub(1).to(device)
    if name == 'ours':
        model = build_ours(args, workdir).to(device).train()
        samples = [DataSample(source='image') for _ in images]

        def losses():
            return model.loss(images, samples)
    else:
        from mmpretrain.datasets.transforms import BEiTMaskGenerator
        model = build_mmpretrain().to(device).train()
        masks = BEiTMaskGenerator(GRID, BEITV2_MASKED, min_num_patches=16)
        samples = [
            DataSample(mask=torch.from_numpy(masks({})['mask']).bool().to(
                device)) for _ in images
        ]
        views = [images, images.clone()]

        def losses():
            return model.loss(views, samples)

    def step() -> torch.Tensor:
        """Gradients made and dropped within: the peak counts them, and
        the next step starts from the weights alone."""
        # forward_peak_bytes runs under inference mode
        with torch.inference_mode(False), torch.enable_grad():
            loss, _ = model.parse_losses(losses())
            loss.backward()
        model.zero_grad(set_to_none=True)
        return loss.detach()

    return model, step


def memory_worker(args: argparse.Namespace) -> None:
    """Subprocess entry: print one model's step peak as JSON."""
    with tempfile.TemporaryDirectory() as workdir:
        _, step = build(args.memory_worker, args, workdir)
        peak = forward_peak_bytes(step, torch.device(args.device))
    print(json.dumps({'peak_bytes': peak}))


def peak_mib(name: str, args: argparse.Namespace) -> float:
    cmd = [
        sys.executable,
        os.path.abspath(__file__), '--batch-size',
        str(args.batch_size), '--device', args.device, '--memory-worker',
        name
    ] + (['--with-cp'] if args.with_cp else [])
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD))
    print(f'[memory] {name} (subprocess) ...', flush=True)
    result = subprocess.run(
        cmd, env=env, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(
        result.stdout.strip().splitlines()[-1])['peak_bytes'] / MIB


def main() -> None:
    args = parse_args()
    if args.memory_worker:
        memory_worker(args)
        return
    with tempfile.TemporaryDirectory() as workdir:
        steps = {name: build(name, args, workdir)[1] for name in MODELS}
        timings = time_forwards(steps, args.iters, args.warmup,
                                torch.device(args.device))
    seconds = {name: timings[name][0] for name in MODELS}
    rows = [
        Row('step throughput', 'img/s', args.batch_size / seconds['ours'],
            args.batch_size / seconds['mmpretrain']),
        Row('step time', 's', seconds['ours'], seconds['mmpretrain']),
    ]
    for row in rows:
        print(f'[{row.name}] {format_row(row)}', flush=True)
    if not args.skip_memory:
        rows.append(
            Row('step peak memory', 'MiB', peak_mib('ours', args),
                peak_mib('mmpretrain', args)))
    cells = [HEADER[:-1]] + [row_cells(r)[:-1] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    lines = [
        '  '.join(c.ljust(w) for c, w in zip(line, widths)).rstrip()
        for line in cells
    ]
    lines.insert(1, '-' * len(lines[0]))
    print(f'\nPretraining step (forward + backward, tokenizer included), '
          f'ViT-B/16 at {IMG_SIZE}, batch {args.batch_size} images on '
          f'{args.device}, ours{" with_cp" if args.with_cp else ""} vs '
          f'mmpretrain BEiT v2 (median of {args.iters} after '
          f'{args.warmup} warm-up; ratio = ours / mmpretrain)')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
