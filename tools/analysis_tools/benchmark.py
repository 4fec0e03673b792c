"""Benchmark the BEiT-3 backbone against the official torchscale model and
timm, and print the ratios in one run.

    python tools/analysis_tools/benchmark.py [--arch base] [--batch-size 8] \
        [--img-size 224] [--text-len 32] [--iters 5] [--warmup 2] \
        [--modes image text image+text bf16 memory caption] \
        [--mem-img-size 1024] [--caption-img-sizes 384 480] \
        [--caption-len 32] [--num-beams 3] [--device cuda]

Every forward runs under ``torch.inference_mode()`` in float32 unless noted.
The torchscale ``BEiT3`` (the released code) is built with its random init
and its state dict is loaded into ours, so both compute the same function and
their outputs must agree to float rounding; the maximum absolute difference
is printed as a check. timm's ``beit3_*`` (vision only, its own random init)
is compared by speed only. Without torchscale or timm the script measures
ours alone (with PyTorch's default random init).

Modes:

- ``image``: throughput (samples/s) of ``BEiT3.encode(images=...)`` vs
  torchscale ``ref(visual_tokens=...)`` vs timm ``forward_features``.
- ``text``: text-only forward (random ids, a few padded positions) vs
  torchscale.
- ``image+text``: fused forward vs torchscale.
- ``bf16``: ours under ``torch.autocast(dtype=torch.bfloat16)`` vs ours in
  float32 on the image path: throughput ratio, maximum absolute error and
  relative error ``||bf16 - fp32|| / ||fp32||``; ours vs torchscale and
  timm under the same autocast (throughput); and on the CPU, the rate of
  the layers' matrix products (q / k / v, out, fc1, fc2 at the batch's
  tokens) in bf16 vs float32: the speed-up the bf16 forward would reach if
  nothing but these products took time; and one profiled forward of ours
  in each precision: the share of operator time in matrix products and
  the costliest other operators.
- ``memory``: peak memory of one image forward (batch 1, global attention)
  at ``--mem-img-size``, ours vs torchscale.
- ``caption`` (not run by default: minutes on a CPU): ``BEiT3Caption``
  beam search (``--num-beams``) of ``--batch-size`` images at each of
  ``--caption-img-sizes``, with the key/value cache (each step feeds
  ``[word, <mask>]``) vs without (each step re-runs image and caption):
  captions/s, caption tokens/s and peak memory, and whether both decodes
  gave the same tokens. Both decode exactly ``--caption-len`` words per
  caption: ``max_len`` is ``caption-len + 3`` (a caption holds at most
  ``max_len - 3`` words) and the bias of ``mlm_head`` at ``</s>`` is set to
  -1e4, so that no beam ends early (``caption-len + 1`` decoding steps,
  the last one closing the beams). The weights are PyTorch's random init
  and the special ids those of ``beit3.spm`` (no tokenizer file needed).
  Each image size runs in a fresh subprocess (as ``memory``), the cached
  and uncached decodes in turn within each iteration; ``--warmup`` counts
  short decodes (2 words) there, and the peak memory is that of the first
  timed decode of each.

Timings are the median of ``--iters`` forwards after ``--warmup`` forwards,
taken with ``time.perf_counter`` (after ``torch.cuda.synchronize`` on CUDA).
The models compared in one mode run in turn within each iteration, so that
other load on the machine affects them alike.
Ratios are ours / reference: above 1 is faster for throughput, below 1 is
less memory for memory (caption: cached / uncached).

How memory is measured: each model is built, run once as a warm-up and
measured in a fresh subprocess (this script with a hidden flag), so that
nothing from the other model or an earlier mode is counted. The number is
the forward's own peak above what is live right before it (weights and
input excluded, the output included):

- CUDA: ``torch.cuda.max_memory_allocated()`` after
  ``torch.cuda.reset_peak_memory_stats()``, minus
  ``torch.cuda.memory_allocated()`` before the forward.
- CPU: tracemalloc does not see torch's allocations, so the resident set
  is read from the kernel. Writing ``5`` to ``/proc/self/clear_refs`` resets
  the peak RSS (``VmHWM`` in ``/proc/self/status``) to the current RSS; the
  forward's peak is ``VmHWM`` after it minus ``VmRSS`` before it. This is
  exact at page granularity and has no sampling gap, unlike polling RSS from
  a thread. The worker runs with a fixed ``MALLOC_MMAP_THRESHOLD_`` so that
  glibc serves every tensor above 1 MiB with its own mapping and returns it
  to the system when freed: otherwise memory freed while building the model
  stays resident in malloc's heap, the forward reuses it, and its peak would
  be under-counted. Needs Linux (``clear_refs`` is refused elsewhere, and
  the script then says so).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from torch.profiler import ProfilerActivity, profile

from beit3_mm.models import BEiT3

try:
    with warnings.catch_warnings():  # torchscale imports timm.models.layers
        warnings.simplefilter('ignore', FutureWarning)
        from torchscale.architecture.config import EncoderConfig
        from torchscale.model.BEiT3 import BEiT3 as TorchscaleBEiT3
except ImportError:
    TorchscaleBEiT3 = None

try:
    import timm
except ImportError:
    timm = None

Tensor = torch.Tensor
Forward = Callable[[], Tensor]
Timings = Dict[str, Tuple[float, Tensor]]

MODES = ('image', 'text', 'image+text', 'bf16', 'memory', 'caption')
DEFAULT_MODES = MODES[:-1]
VOCAB_SIZE = 64010
PAD_ID = 1
MMAP_THRESHOLD = 1 << 20
MIB = 1 << 20


@dataclass
class Row:
    """One line of the final table; ``ratio`` is ours / reference."""
    name: str
    unit: str
    ours: float
    reference: Optional[float] = None
    check: str = ''

    @property
    def ratio(self) -> Optional[float]:
        return None if self.reference is None else self.ours / self.reference


@dataclass
class Setup:
    """Models and inputs shared by the speed modes."""
    device: torch.device
    ours: BEiT3
    ref: Optional[nn.Module]
    timm_model: Optional[nn.Module]
    images: Tensor
    text_ids: Tensor
    padding_mask: Tensor


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Benchmark the BEiT-3 backbone against torchscale/timm')
    parser.add_argument('--arch', choices=['base', 'large'], default='base')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--text-len', type=int, default=32)
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument(
        '--modes',
        nargs='+',
        choices=MODES,
        default=list(DEFAULT_MODES),
        help='caption is run only when named')
    parser.add_argument(
        '--mem-img-size',
        type=int,
        default=1024,
        help='input size of the memory mode')
    parser.add_argument(
        '--caption-img-sizes',
        type=int,
        nargs='+',
        default=[384, 480],
        help='input sizes of the caption mode')
    parser.add_argument(
        '--caption-len',
        type=int,
        default=32,
        help='words decoded per caption in the caption mode')
    parser.add_argument(
        '--num-beams', type=int, default=3, help='beams of the caption mode')
    parser.add_argument(
        '--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument(
        '--memory-worker',
        choices=['ours', 'torchscale'],
        help=argparse.SUPPRESS)
    parser.add_argument(
        '--caption-worker', type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.iters < 1 or args.warmup < 0 or args.batch_size < 1:
        parser.error('--iters and --batch-size must be >= 1, --warmup >= 0')
    if args.caption_len < 1 or args.num_beams < 1:
        parser.error('--caption-len and --num-beams must be >= 1')
    return args


# ------------------------------------------------------------------- models
def build_torchscale(arch: str, img_size: int) -> nn.Module:
    """The official backbone with torchscale's random init."""
    settings = BEiT3.arch_zoo[arch]
    config = EncoderConfig(
        img_size=img_size,
        patch_size=settings['patch_size'],
        vocab_size=VOCAB_SIZE,
        multiway=True,
        layernorm_embedding=False,
        normalize_output=False,
        no_output_layer=True,
        drop_path_rate=0.,
        encoder_embed_dim=settings['embed_dims'],
        encoder_attention_heads=settings['num_heads'],
        encoder_ffn_embed_dim=settings['feedforward_channels'],
        encoder_layers=settings['num_layers'],
        checkpoint_activations=False)
    return TorchscaleBEiT3(config).eval()


def build_ours(arch: str, img_size: int) -> BEiT3:
    """Ours with PyTorch's default random init (``init_weights`` is skipped:
    it adds nothing to a benchmark but a log line per parameter)."""
    return BEiT3(
        arch=arch,
        img_size=img_size,
        vocab_size=VOCAB_SIZE,
        output_norm=False,
        out_type='raw').eval()


def build_pair(arch: str, img_size: int,
               device: torch.device) -> Tuple[BEiT3, Optional[nn.Module]]:
    """Ours and torchscale with identical weights (ours alone without
    torchscale)."""
    ours = build_ours(arch, img_size)
    if TorchscaleBEiT3 is None:
        return ours.to(device), None
    ref = build_torchscale(arch, img_size)
    ours.load_state_dict(ref.state_dict())
    return ours.to(device), ref.to(device)


def build_timm(arch: str, img_size: int,
               device: torch.device) -> Optional[nn.Module]:
    name = f'beit3_{arch}_patch16_224'
    if timm is None or not timm.is_model(name):
        return None
    model = timm.create_model(
        name, pretrained=False, img_size=img_size, num_classes=0)
    return model.eval().to(device)


def make_text(batch: int, length: int,
              device: torch.device) -> Tuple[Tensor, Tensor]:
    """Random ids; sample ``i`` ends with ``i % 4`` padded positions
    (at least one real token kept)."""
    ids = torch.randint(3, VOCAB_SIZE, (batch, length))
    num_pad = [min(i % 4, length - 1) for i in range(batch)]
    positions = torch.arange(length)
    pad = torch.stack([positions >= length - n for n in num_pad])
    ids[pad] = PAD_ID
    return ids.to(device), pad.to(device)


def build_setup(args: argparse.Namespace) -> Setup:
    device = torch.device(args.device)
    torch.manual_seed(0)
    ours, ref = build_pair(args.arch, args.img_size, device)
    images = torch.randn(args.batch_size, 3, args.img_size,
                         args.img_size).to(device)
    text_ids, padding_mask = make_text(args.batch_size, args.text_len, device)
    return Setup(
        device=device,
        ours=ours,
        ref=ref,
        timm_model=build_timm(args.arch, args.img_size, device),
        images=images,
        text_ids=text_ids,
        padding_mask=padding_mask)


# ------------------------------------------------------------------- timing
def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_forwards(fns: Dict[str, Forward], iters: int, warmup: int,
                  device: torch.device) -> Timings:
    """Median seconds per call of each function and its last output.

    The calls are interleaved (one of each function per round), so that a
    change of load on the machine affects every function alike.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    outs = {}
    for _ in range(iters):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            outs[name] = fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), outs[name]) for name in fns}


def max_abs_diff(a: Tensor, b: Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def measure(mode: str, fns: Dict[str, Forward], setup: Setup,
            args: argparse.Namespace) -> Timings:
    print(f'[{mode}] timing {", ".join(fns)} ...', flush=True)
    return time_forwards(fns, args.iters, args.warmup, setup.device)


def speed_row(mode: str,
              results: Timings,
              args: argparse.Namespace,
              ref_name: str,
              check_outputs: bool = True) -> Row:
    """Throughput of ours vs ``ref_name`` (if measured), with the max abs
    difference of their outputs."""
    ours_t, ours_out = results['ours']
    row = Row(mode, 'samples/s', args.batch_size / ours_t)
    if ref_name in results:
        ref_t, ref_out = results[ref_name]
        row.name = f'{mode} vs {ref_name}'
        row.reference = args.batch_size / ref_t
        if check_outputs:
            row.check = f'max|diff| {max_abs_diff(ours_out, ref_out):.2e}'
    return row


# -------------------------------------------------------------- speed modes
def image_forward(model: nn.Module, images: Tensor) -> Forward:
    """The image-only forward of ours or torchscale."""
    if isinstance(model, BEiT3):
        return lambda: model.encode(images=images)
    return lambda: model(visual_tokens=images)['encoder_out']


def bench_image(setup: Setup, args: argparse.Namespace) -> List[Row]:
    """Ours vs torchscale (outputs compared) vs timm (speed only)."""
    images = setup.images
    fns = {'ours': image_forward(setup.ours, images)}
    if setup.ref is not None:
        fns['torchscale'] = image_forward(setup.ref, images)
    if setup.timm_model is not None:
        fns['timm'] = lambda: setup.timm_model.forward_features(images)
    results = measure('image', fns, setup, args)
    rows = [speed_row('image', results, args, 'torchscale')]
    if 'timm' in results:
        rows.append(
            speed_row('image', results, args, 'timm', check_outputs=False))
    return rows


def bench_text(setup: Setup, args: argparse.Namespace) -> List[Row]:
    ids, pad = setup.text_ids, setup.padding_mask
    fns = {
        'ours': lambda: setup.ours.encode(text_ids=ids, text_padding_mask=pad)
    }
    if setup.ref is not None:
        fns['torchscale'] = lambda: setup.ref(
            textual_tokens=ids, text_padding_position=pad)['encoder_out']
    results = measure('text', fns, setup, args)
    return [speed_row('text', results, args, 'torchscale')]


def bench_fused(setup: Setup, args: argparse.Namespace) -> List[Row]:
    images, ids, pad = setup.images, setup.text_ids, setup.padding_mask
    fns = {
        'ours':
        lambda: setup.ours.encode(
            images=images, text_ids=ids, text_padding_mask=pad)
    }
    if setup.ref is not None:
        fns['torchscale'] = lambda: setup.ref(
            textual_tokens=ids,
            visual_tokens=images,
            text_padding_position=pad)['encoder_out']
    results = measure('image+text', fns, setup, args)
    return [speed_row('image+text', results, args, 'torchscale')]


def under_bf16(device: torch.device, forward: Forward) -> Forward:
    """``forward`` under ``torch.autocast(dtype=torch.bfloat16)``."""

    def fn() -> Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return forward()

    return fn


def bench_bf16(setup: Setup, args: argparse.Namespace) -> List[Row]:
    """Ours under bf16 autocast vs ours in fp32 (speed, error), and vs
    torchscale and timm under the same autocast (speed), image path."""
    images = setup.images
    fns = {
        'ours bf16': under_bf16(setup.device,
                                image_forward(setup.ours, images)),
        'ours fp32': image_forward(setup.ours, images)
    }
    if setup.ref is not None:
        fns['torchscale bf16'] = under_bf16(setup.device,
                                            image_forward(setup.ref, images))
    if setup.timm_model is not None:
        fns['timm bf16'] = under_bf16(
            setup.device, lambda: setup.timm_model.forward_features(images))
    results = measure('bf16', fns, setup, args)
    bf16_t, bf16_out = results['ours bf16']
    fp32_t, fp32_out = results['ours fp32']
    diff = bf16_out.float() - fp32_out
    rel = (diff.norm() / fp32_out.norm()).item()
    rows = [
        Row('image bf16 vs ours fp32',
            'samples/s',
            args.batch_size / bf16_t,
            args.batch_size / fp32_t,
            check=f'max|err| {diff.abs().max().item():.2e}, rel {rel:.2e}')
    ]
    for name in ('torchscale bf16', 'timm bf16'):
        if name in results:
            rows.append(
                Row(f'image bf16 vs {name}', 'samples/s',
                    args.batch_size / bf16_t,
                    args.batch_size / results[name][0]))
    if setup.device.type == 'cpu':  # the ceiling of the bf16 speed-up
        patch = BEiT3.arch_zoo[args.arch]['patch_size']
        tokens = args.batch_size * (1 + (args.img_size // patch)**2)
        rate = gemm_rates(
            linear_gemms(args.arch, tokens), args.iters,
            args.warmup)['total']
        rows.append(
            Row('GEMM bf16 vs fp32 (the layers\' linears)', 'GFLOP/s',
                rate['bfloat16'], rate['float32']))
        for name in ('ours fp32', 'ours bf16'):
            print(f'[bf16] {format_breakdown(name, fns[name])}', flush=True)
    return rows


Gemm = Tuple[int, int, int, bool, bool]


def linear_gemms(arch: str, tokens: int,
                 backward: bool = False) -> Dict[str, Gemm]:
    """The matrix products of one layer's linears as (m, k, n, a
    transposed, b transposed), in the layouts autograd hands them over:
    ``tokens`` rows through q / k / v (one D x 3D product), out (D x D),
    fc1 (D x F) and fc2 (F x D): ``x W^T``; with ``backward``, also each
    one's input gradient ``dY W`` and weight gradient ``dY^T x``."""
    settings = BEiT3.arch_zoo[arch]
    D, F = settings['embed_dims'], settings['feedforward_channels']
    gemms = {}
    for name, (i, o) in dict(qkv=(D, 3 * D), out=(D, D), fc1=(D, F),
                             fc2=(F, D)).items():
        gemms[f'{name} fwd'] = (tokens, i, o, False, True)
        if backward:
            gemms[f'{name} dgrad'] = (tokens, o, i, False, False)
            gemms[f'{name} wgrad'] = (o, tokens, i, True, False)
    return gemms


def gemm_rates(gemms: Dict[str, Gemm], iters: int,
               warmup: int) -> Dict[str, Dict[str, float]]:
    """GFLOP/s of each product in float32 and bfloat16 (the two in turn
    within each iteration, median), and ``'total'``: the FLOP-weighted
    rate of all of them (their summed FLOPs over their summed times)."""

    def operand(rows: int, cols: int, transposed: bool,
                dtype: torch.dtype) -> Tensor:
        if transposed:
            return torch.randn(cols, rows, dtype=dtype).t()
        return torch.randn(rows, cols, dtype=dtype)

    rates, flops = {}, {}
    for name, (m, k, n, trans_a, trans_b) in gemms.items():
        fns = {}
        for dtype in (torch.float32, torch.bfloat16):
            a = operand(m, k, trans_a, dtype)
            b = operand(k, n, trans_b, dtype)
            fns[str(dtype)[6:]] = lambda a=a, b=b: a @ b
        flops[name] = 2 * m * k * n
        times = time_forwards(fns, iters, warmup, torch.device('cpu'))
        rates[name] = {p: flops[name] / t / 1e9 for p, (t, _) in
                       times.items()}
    rates['total'] = {
        p: sum(flops.values()) / sum(flops[n] / rates[n][p] for n in gemms)
        for p in ('float32', 'bfloat16')}
    return rates


MATMUL_OPS = ('aten::mm', 'aten::addmm', 'aten::bmm', 'aten::baddbmm',
              'mkldnn::_linear_pointwise', 'aten::mkldnn_convolution',
              'aten::convolution_backward')


def breakdown(fn: Callable[[], object]) -> Tuple[float, List[Tuple[str,
                                                                 float]]]:
    """One profiled call of ``fn``: the share of its operator time (self
    CPU time) in matrix products (and convolutions), and the five costliest
    other operators with their share."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    times = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    total = sum(times.values())
    others = sorted(((k, t / total) for k, t in times.items()
                     if k not in MATMUL_OPS), key=lambda kt: -kt[1])
    return sum(times.get(k, 0) for k in MATMUL_OPS) / total, others[:5]


def format_breakdown(name: str, fn: Callable[[], object]) -> str:
    share, others = breakdown(fn)
    return (f'{name}: {share:.0%} of the operator time in matrix products; '
            'most of the rest: ' + ', '.join(f'{k} {t:.1%}'
                                             for k, t in others))


SPEED_MODES = {
    'image': bench_image,
    'text': bench_text,
    'image+text': bench_fused,
    'bf16': bench_bf16,
}


def run_speed_modes(args: argparse.Namespace) -> List[Row]:
    """The speed modes on one setup, built as a user builds a model
    (ordinary parameters, not inference tensors) and run under
    ``torch.inference_mode``."""
    modes = [m for m in args.modes if m in SPEED_MODES]
    if not modes:
        return []
    setup = build_setup(args)
    rows = []
    for mode in modes:
        with torch.inference_mode():
            mode_rows = SPEED_MODES[mode](setup, args)
        for row in mode_rows:
            print(f'[{mode}] {format_row(row)}', flush=True)
            rows.append(row)
    return rows


# ------------------------------------------------------------------- memory
def read_proc_status(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status``, in bytes."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f'{field} not found in /proc/self/status')


def reset_peak_rss() -> int:
    """Reset ``VmHWM`` to the current RSS and return that RSS in bytes."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError as e:
        raise RuntimeError(
            'the CPU memory mode needs /proc/self/clear_refs (Linux) to '
            f'reset the peak RSS: {e}') from e
    return read_proc_status('VmRSS')


@torch.inference_mode()
def forward_peak_bytes(forward: Forward, device: torch.device) -> int:
    """Peak memory of one call of ``forward`` above what is live before."""
    forward()  # warm-up: lazy kernels, allocator pools, code pages
    if device.type == 'cuda':
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        out = forward()
        synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
    else:
        base = reset_peak_rss()
        out = forward()
        peak = read_proc_status('VmHWM')
    del out
    return peak - base


def memory_worker(args: argparse.Namespace) -> None:
    """Subprocess entry: print the forward peak of one model as JSON."""
    device = torch.device(args.device)
    size = args.mem_img_size
    images = torch.randn(1, 3, size, size).to(device)
    build = build_ours if args.memory_worker == 'ours' else build_torchscale
    forward = image_forward(build(args.arch, size).to(device), images)
    print(json.dumps({'peak_bytes': forward_peak_bytes(forward, device)}))


def spawn_memory_worker(args: argparse.Namespace, which: str) -> int:
    cmd = [
        sys.executable,
        os.path.abspath(__file__), '--arch', args.arch, '--mem-img-size',
        str(args.mem_img_size), '--device', args.device, '--memory-worker',
        which
    ]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD))
    print(f'[memory] {which} (subprocess) ...', flush=True)
    result = subprocess.run(
        cmd, env=env, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])['peak_bytes']


def bench_memory(args: argparse.Namespace) -> Row:
    row = Row(f'peak memory @{args.mem_img_size} bs1', 'MiB',
              spawn_memory_worker(args, 'ours') / MIB)
    if TorchscaleBEiT3 is not None:
        row.name += ' vs torchscale'
        row.reference = spawn_memory_worker(args, 'torchscale') / MIB
    print(f'[memory] {format_row(row)}', flush=True)
    return row


# ------------------------------------------------------------------ caption
EOS_ID, MASK_ID = 2, 64001  # beit3.spm: <s> 0, <pad> 1, </s> 2, <mask>


class SpmIds(SimpleNamespace):
    """What generate() reads of ``beit3.spm``'s tokenizer (its special ids
    and its size, ``<mask>`` the last id), without the file."""

    def __len__(self) -> int:
        return self.mask_token_id + 1


def build_captioner(args: argparse.Namespace, img_size: int) -> nn.Module:
    """``BEiT3Caption`` with PyTorch's random init whose ``</s>`` never
    wins: every decode runs ``--caption-len`` words."""
    from beit3_mm.models.multimodal import BEiT3Caption
    model = BEiT3Caption(
        backbone=dict(
            type='BEiT3',
            arch=args.arch,
            img_size=img_size,
            vocab_size=VOCAB_SIZE,
            output_norm=True),
        num_beams=args.num_beams,
        max_len=args.caption_len + 3)
    model.tokenizer = SpmIds(
        bos_token_id=0, eos_token_id=EOS_ID, mask_token_id=MASK_ID)
    with torch.no_grad():
        model.mlm_head.bias[EOS_ID] = -1e4
    return model.eval()


def decode_peak_bytes(decode: Callable[[], list],
                      device: torch.device) -> Tuple[float, int, list]:
    """Seconds, peak memory above what is live before (as
    :func:`forward_peak_bytes`, without its warm-up) and the output of one
    call of ``decode``."""
    if device.type == 'cuda':
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = reset_peak_rss()
    start = time.perf_counter()
    out = decode()
    synchronize(device)
    seconds = time.perf_counter() - start
    if device.type == 'cuda':
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = read_proc_status('VmHWM')
    return seconds, peak - base, out


def caption_worker(args: argparse.Namespace) -> None:
    """Subprocess entry: time and measure the cached and uncached decodes at
    one image size, print them as JSON."""
    device = torch.device(args.device)
    size = args.caption_worker
    torch.manual_seed(0)
    model = build_captioner(args, size).to(device)
    images = torch.randn(args.batch_size, 3, size, size).to(device)
    modes = {'cached': True, 'uncached': False}
    for use_cache in modes.values():
        for _ in range(args.warmup):
            model.generate(images, max_len=5, use_cache=use_cache)
    times = {name: [] for name in modes}
    peaks, words = {}, {}
    for _ in range(args.iters):
        for name, use_cache in modes.items():
            seconds, peak, out = decode_peak_bytes(
                lambda: model.generate(images, use_cache=use_cache)[0],
                device)
            times[name].append(seconds)
            peaks.setdefault(name, peak)
            words[name] = out
    lengths = {len(w) for out in words.values() for w in out}
    if lengths != {args.caption_len}:
        raise RuntimeError(f'captions of {lengths} words, not '
                           f'{args.caption_len}: </s> was not suppressed')
    print(
        json.dumps({
            name: dict(seconds=statistics.median(times[name]),
                       peak_bytes=peaks[name])
            for name in modes
        } | dict(same_tokens=words['cached'] == words['uncached'])))


def bench_caption(args: argparse.Namespace) -> List[Row]:
    """Cached vs uncached beam search at each ``--caption-img-sizes``."""
    rows = []
    for size in args.caption_img_sizes:
        cmd = [
            sys.executable,
            os.path.abspath(__file__), '--arch', args.arch, '--batch-size',
            str(args.batch_size), '--iters',
            str(args.iters), '--warmup',
            str(args.warmup), '--caption-len',
            str(args.caption_len), '--num-beams',
            str(args.num_beams), '--device', args.device,
            '--caption-worker',
            str(size)
        ]
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD))
        print(f'[caption] {size}: cached and uncached decodes '
              '(subprocess) ...', flush=True)
        result = json.loads(
            subprocess.run(
                cmd, env=env, stdout=subprocess.PIPE, text=True,
                check=True).stdout.strip().splitlines()[-1])
        cached, uncached = result['cached'], result['uncached']
        check = ('same tokens' if result['same_tokens'] else
                 'TOKENS DIFFER')
        name = f'caption @{size} beam {args.num_beams} cached vs uncached'
        for row in (
                Row(name, 'captions/s', args.batch_size / cached['seconds'],
                    args.batch_size / uncached['seconds'], check),
                Row(name, 'tokens/s',
                    args.batch_size * args.caption_len / cached['seconds'],
                    args.batch_size * args.caption_len /
                    uncached['seconds']),
                Row(name, 'MiB peak', cached['peak_bytes'] / MIB,
                    uncached['peak_bytes'] / MIB)):
            print(f'[caption] {row.unit}: {format_row(row)}', flush=True)
            rows.append(row)
    return rows


# -------------------------------------------------------------------- table
HEADER = ('measurement', 'unit', 'ours', 'reference', 'ratio', 'check')


def row_cells(row: Row) -> Tuple[str, ...]:
    return (row.name, row.unit, f'{row.ours:.2f}',
            '-' if row.reference is None else f'{row.reference:.2f}',
            '-' if row.ratio is None else f'{row.ratio:.2f}x', row.check)


def format_row(row: Row) -> str:
    return '  '.join(f'{key} {value}'
                     for key, value in zip(HEADER[2:],
                                           row_cells(row)[2:]) if value)


def print_table(rows: List[Row], args: argparse.Namespace) -> None:
    cells = [HEADER] + [row_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines = [
        '  '.join(c.ljust(w) for c, w in zip(line, widths)).rstrip()
        for line in cells
    ]
    lines.insert(1, '-' * len(lines[0]))
    inputs = []
    if set(args.modes) & set(SPEED_MODES):
        inputs.append(f'img {args.img_size}, text {args.text_len}')
    if 'caption' in args.modes:
        inputs.append(f'caption {args.caption_len} words (ours = cached, '
                      'reference = uncached)')
    print(f'\nBEiT-3 {args.arch} on {args.device} '
          f'(batch {args.batch_size}, {", ".join(inputs + [""])}median of '
          f'{args.iters} after {args.warmup} warm-up; ratio = ours / '
          'reference)')
    print('\n'.join(lines))


def main() -> None:
    args = parse_args()
    if args.memory_worker:
        memory_worker(args)
        return
    if args.caption_worker:
        caption_worker(args)
        return
    if TorchscaleBEiT3 is None:
        print('torchscale is not installed: measuring ours only')
    rows = run_speed_modes(args)
    if 'memory' in args.modes:
        rows.append(bench_memory(args))
    if 'caption' in args.modes:
        rows += bench_caption(args)
    print_table(rows, args)


if __name__ == '__main__':
    main()
