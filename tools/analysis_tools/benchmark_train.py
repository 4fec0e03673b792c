"""Benchmark training: the step time and peak memory of BEiT-3 in fp32 and
bf16 autocast against torchscale's BEiT3, and the per-rank memory of the
sharding strategies against DDP.

    python tools/analysis_tools/benchmark_train.py [--modes step sharded] \
        [--arch base] [--img-size 224] [--batch-size 8] [--iters 3] \
        [--warmup 1] [--no-optimizer] [--shard-arch small] [--ranks 2]

``step``: one training step of the image classification path: images
through the backbone, the mean of the patch tokens through LayerNorm and a
1000-way linear head, cross-entropy, backward and (unless
``--no-optimizer``) an AdamW step. Ours and torchscale's BEiT3 carry the
same weights (torchscale's random init loaded into ours) and share the
head. fp32, and bf16 as ``--amp`` runs it on the CPU
(``MixedPrecisionOptimWrapper``: ``torch.autocast(dtype=torch.bfloat16)``
around the forward, fp32 weights, gradients and AdamW states). The four
steps run in turn in each iteration (median of ``--iters`` after
``--warmup``), so that other load on the machine affects them alike,
with glibc's default allocation as in a training run. Peak memory, in a
subprocess with ``MALLOC_MMAP_THRESHOLD_`` set (freed tensors then leave
the resident set, see ``benchmark.py``; every large allocation then also
faults its pages in anew, which would slow the bf16 step, with its weight
casts, more than the fp32 one): the step's peak resident set above the
resident set before it (``VmHWM`` reset through ``/proc/self/clear_refs``).
Then, in the same run: the rates of the linears' matrix products (forward,
input and weight gradients, at the step's tokens) in fp32 and bf16, whose
FLOP-weighted ratio is the ceiling of the bf16 speed-up; and for ours in
each precision, one step under ``torch.profiler``: the share of operator
time in matrix products and the costliest other operators.

``sharded``: ``--ranks`` gloo processes on the CPU train one step of a
BEiT-3 (``--shard-arch``, with its language half, on image + text) under
DDP, FSDP (full shard, one unit per multiway layer, bf16 compute: the
settings of ``configs/_base_/strategies/fsdp_bf16.py``) and DeepSpeed
ZeRO-2 / ZeRO-3 (bf16, the ``zero_optimization`` of
``deepspeed_zero{2,3}_bf16.py``), then each rank adds up the bytes of the
tensors it holds: the parameters (DDP: the fp32 module; FSDP: the flat
fp32 shards; ZeRO-2: the bf16 module; ZeRO-3: the bf16 partitions
``ds_tensor`` and the parameters it keeps whole) and the optimizer state
(AdamW's ``exp_avg`` / ``exp_avg_sq``, and ZeRO's fp32 master
partitions). The ratio to DDP is printed per strategy.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Tuple

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

from beit3_mm.models import BEiT3

# the sibling inference benchmark: models with identical weights, RSS peaks
from benchmark import (MMAP_THRESHOLD, VOCAB_SIZE, TorchscaleBEiT3,
                       build_pair, format_breakdown, gemm_rates, linear_gemms,
                       read_proc_status, reset_peak_rss)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
MIB = 1 << 20
NUM_CLASSES = 1000
SHARD_ARCHS = {
    'tiny': dict(embed_dims=64, num_layers=4, num_heads=4,
                 feedforward_channels=256, patch_size=16),
    'small': dict(embed_dims=384, num_layers=6, num_heads=6,
                  feedforward_channels=1536, patch_size=16),
}
STRATEGIES = ('DDP', 'FSDP', 'ZeRO-2', 'ZeRO-3')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Benchmark training')
    parser.add_argument(
        '--modes', nargs='+', choices=['step', 'sharded'],
        default=['step', 'sharded'])
    parser.add_argument('--arch', choices=['base', 'large'], default='base')
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--iters', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--no-optimizer', action='store_true',
                        help='forward + backward only')
    parser.add_argument('--shard-arch', choices=list(SHARD_ARCHS),
                        default='small')
    parser.add_argument('--ranks', type=int, default=2)
    parser.add_argument('--port', type=int, default=29517)
    parser.add_argument('--memory-worker', action='store_true',
                        help=argparse.SUPPRESS)
    return parser.parse_args()


# -------------------------------------------------------------------- step
class Classifier(nn.Module):
    """A backbone's patch tokens -> mean -> LayerNorm -> linear head."""

    def __init__(self, backbone: nn.Module, tokens: Callable, dims: int):
        super().__init__()
        self.backbone = backbone
        self.tokens = tokens
        self.norm = nn.LayerNorm(dims)
        self.head = nn.Linear(dims, NUM_CLASSES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.tokens(self.backbone, images)[:, 1:].mean(dim=1)
        return self.head(self.norm(x))


def make_step(model: Classifier, images: torch.Tensor, labels: torch.Tensor,
              bf16: bool, with_optimizer: bool) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-6)

    def step() -> None:
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(images), labels)
        loss.backward()
        if with_optimizer:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def build_steps(args: argparse.Namespace) -> Dict[str, Callable[[], None]]:
    """'ours fp32', 'ours bf16' (and 'torchscale fp32', 'torchscale bf16'):
    one training step each, the models carrying the same weights."""
    torch.manual_seed(0)
    ours, ref = build_pair(args.arch, args.img_size, torch.device('cpu'))
    D = ours.embed_dims
    models = {'ours': Classifier(ours, lambda m, x: m.encode(images=x), D)}
    if ref is not None:
        models['torchscale'] = Classifier(
            ref, lambda m, x: m(visual_tokens=x)['encoder_out'], D)
        models['torchscale'].load_state_dict(
            models['ours'].state_dict(), strict=False)  # the same head
    for model in models.values():
        model.train()
    images = torch.randn(args.batch_size, 3, args.img_size, args.img_size)
    labels = torch.randint(0, NUM_CLASSES, (args.batch_size, ))
    return {
        f'{name} {precision}': make_step(model, images, labels,
                                         precision == 'bf16',
                                         not args.no_optimizer)
        for name, model in models.items() for precision in ('fp32', 'bf16')
    }


def memory_worker(args: argparse.Namespace) -> None:
    """Subprocess entry (``MALLOC_MMAP_THRESHOLD_`` set): print each step's
    peak resident set above the one before it, as JSON."""
    peaks = {}
    for name, step in build_steps(args).items():
        step()  # AdamW allocates its states in the first step
        base = reset_peak_rss()
        step()
        peaks[name] = read_proc_status('VmHWM') - base
    print(json.dumps(peaks))


def step_peaks(args: argparse.Namespace) -> Dict[str, int]:
    cmd = [sys.executable, os.path.abspath(__file__), '--memory-worker',
           '--arch', args.arch, '--img-size', str(args.img_size),
           '--batch-size', str(args.batch_size)] + (
               ['--no-optimizer'] if args.no_optimizer else [])
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD))
    print('[step] peak memory (subprocess) ...', flush=True)
    out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench_step(args: argparse.Namespace) -> None:
    steps = build_steps(args)
    times: Dict[str, List[float]] = {name: [] for name in steps}
    for i in range(args.warmup + args.iters):
        elapsed = {}
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            elapsed[name] = time.perf_counter() - start
            if i >= args.warmup:  # AdamW allocates its states in warm-up
                times[name].append(elapsed[name])
        print(f'[step] iteration {i + 1}: ' + ', '.join(
            f'{n} {t:.2f}s' for n, t in elapsed.items()), flush=True)
    speed = {n: args.batch_size / statistics.median(t)
             for n, t in times.items()}
    peaks = step_peaks(args)
    what = 'forward + backward' + ('' if args.no_optimizer else
                                   ' + AdamW step')
    print(f'\nTraining step ({what}), BEiT-3 {args.arch} at '
          f'{args.img_size}, batch {args.batch_size}, CPU, median of '
          f'{args.iters} after {args.warmup} warm-up')
    print('| model | precision | samples/s | peak memory (MiB) |')
    print('|---|---|---|---|')
    for name in steps:
        model, precision = name.split()
        print(f'| {model} | {precision} | {speed[name]:.2f} | '
              f'{peaks[name] / MIB:.0f} |')
    print(f'\nours bf16 / ours fp32: '
          f'{speed["ours bf16"] / speed["ours fp32"]:.2f}x')
    if 'torchscale fp32' in speed:
        for precision in ('fp32', 'bf16'):
            print(f'ours / torchscale, {precision}: '
                  f'{speed[f"ours {precision}"] / speed[f"torchscale {precision}"]:.2f}x'  # noqa: E501
                  f' speed, {peaks[f"ours {precision}"] / max(peaks[f"torchscale {precision}"], 1):.2f}x'  # noqa: E501
                  ' memory')
    patch = BEiT3.arch_zoo[args.arch]['patch_size']
    tokens = args.batch_size * (1 + (args.img_size // patch)**2)
    rates = gemm_rates(linear_gemms(args.arch, tokens, backward=True),
                       args.iters, args.warmup)
    print(f'\nMatrix products of the linears ({tokens} tokens), GFLOP/s:')
    print('| product | fp32 | bf16 | bf16 / fp32 |')
    print('|---|---|---|---|')
    for name, rate in rates.items():
        print(f'| {name} | {rate["float32"]:.0f} | {rate["bfloat16"]:.0f} '
              f'| {rate["bfloat16"] / rate["float32"]:.2f}x |')
    for precision in ('fp32', 'bf16'):
        print(format_breakdown(f'ours {precision}',
                               steps[f'ours {precision}']))


# ----------------------------------------------------------------- sharded
def nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def adam_states(optimizer: torch.optim.Optimizer) -> List[torch.Tensor]:
    return [t for s in optimizer.state.values() for k, t in s.items()
            if k in ('exp_avg', 'exp_avg_sq')]


def strategy_cfg(name: str) -> dict:
    from mmengine.config import Config
    path = os.path.join(ROOT, 'configs/_base_/strategies', name)
    return Config.fromfile(path).strategy.to_dict()


def wrap(strategy: str, model: nn.Module, batch_size: int):
    """The wrapped model and a function (loss) -> None doing a step, and a
    function returning (parameter bytes, optimizer bytes) of this rank."""
    if strategy == 'DDP':
        model = nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=1e-6)

        def step(loss):
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return model, step, lambda: (nbytes(model.parameters()),
                                     nbytes(adam_states(opt)))
    if strategy == 'FSDP':
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp import MixedPrecision

        from beit3_mm.engine.strategies.fsdp import multiway_layer_policy
        precision = strategy_cfg('fsdp_bf16.py')['model_wrapper'][
            'mixed_precision']
        model = FSDP(
            model,
            device_id=torch.device('cpu'),
            auto_wrap_policy=multiway_layer_policy,
            mixed_precision=MixedPrecision(**{
                k: getattr(torch, v) for k, v in precision.items()}),
            use_orig_params=True)
        opt = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=1e-6)

        def step(loss):
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        # outside forward / backward each unit's flat parameter is its shard
        flat = [m._handle.flat_param for m in FSDP.fsdp_modules(model)
                if m._handle is not None]
        return model, step, lambda: (nbytes(flat), nbytes(adam_states(opt)))
    import deepspeed
    stage = 2 if strategy == 'ZeRO-2' else 3
    cfg = strategy_cfg(f'deepspeed_zero{stage}_bf16.py')
    ds_config = dict(
        train_micro_batch_size_per_gpu=batch_size,
        bf16=cfg['bf16'],
        zero_optimization=cfg['zero_optimization'],
        zero_allow_untested_optimizer=True,
        gradient_clipping=0.0)
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-6)
    engine, zero_opt, _, _ = deepspeed.initialize(
        model=model, optimizer=opt, config=ds_config)

    def step(loss):
        engine.backward(loss)
        engine.step()

    def held() -> Tuple[int, int]:
        if stage == 2:
            params = nbytes(engine.module.parameters())
            master = nbytes(zero_opt.single_partition_of_fp32_groups)
        else:
            # the partitions, and the small parameters kept whole
            # (stage3_param_persistence_threshold)
            params = sum(
                nbytes([p.ds_tensor] + ([p.data] if p.ds_persist else []))
                for p in engine.module.parameters())
            master = nbytes(zero_opt.fp32_partitioned_groups_flat)
        return params, master + nbytes(adam_states(zero_opt.optimizer))

    return engine, step, held


class EncodeLoss(nn.Module):
    """A scalar loss of ``encode(images, text_ids)``: the wrappers gather
    and shard in their ``forward`` hooks."""

    def __init__(self, backbone: BEiT3):
        super().__init__()
        self.backbone = backbone

    def forward(self, images: torch.Tensor,
                text_ids: torch.Tensor) -> torch.Tensor:
        x = self.backbone.encode(images=images, text_ids=text_ids)
        return x.float().pow(2).mean()


def sharded_worker(rank: int, args: argparse.Namespace, out: dict) -> None:
    os.environ.update(
        MASTER_ADDR='127.0.0.1', MASTER_PORT=str(args.port),
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(args.ranks))
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=args.ranks)
    images = torch.randn(2, 3, 64, 64)
    ids = torch.randint(3, VOCAB_SIZE, (2, 8))
    for strategy in STRATEGIES:
        torch.manual_seed(0)
        model = EncodeLoss(BEiT3(
            arch=SHARD_ARCHS[args.shard_arch], img_size=64,
            vocab_size=VOCAB_SIZE, out_type='raw'))
        model, step, held = wrap(strategy, model, 2)
        bf16 = strategy.startswith('ZeRO')  # DeepSpeed casts the weights
        step(model(images.bfloat16() if bf16 else images, ids))
        params, optimizer = held()
        out[(strategy, rank)] = (params, optimizer)
        del model
        dist.barrier()
    dist.destroy_process_group()


def bench_sharded(args: argparse.Namespace) -> None:
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(sharded_worker, args=(args, out), nprocs=args.ranks)
    ddp = sum(out[('DDP', r)][0] + out[('DDP', r)][1]
              for r in range(args.ranks)) / args.ranks
    print(f'\nPer-rank memory, {args.ranks} gloo ranks, BEiT-3 '
          f'{args.shard_arch} (vision + language), one training step')
    print('| strategy | rank | parameters (MiB) | optimizer (MiB) | '
          'total (MiB) | vs DDP |')
    print('|---|---|---|---|---|---|')
    for strategy in STRATEGIES:
        for rank in range(args.ranks):
            params, optimizer = out[(strategy, rank)]
            print(f'| {strategy} | {rank} | {params / MIB:.1f} | '
                  f'{optimizer / MIB:.1f} | {(params + optimizer) / MIB:.1f}'
                  f' | {(params + optimizer) / ddp:.2f}x |')


def main() -> None:
    args = parse_args()
    if args.memory_worker:
        memory_worker(args)
        return
    if 'step' in args.modes:
        if TorchscaleBEiT3 is None:
            print('torchscale is not installed: measuring ours only')
        bench_step(args)
    if 'sharded' in args.modes:
        bench_sharded(args)


if __name__ == '__main__':
    main()
