"""Inference under CPU bf16 autocast: weights cast to bf16 once, bias and
GELU inside oneDNN's matrix product.

Autocast casts every float32 weight to bf16 anew in each forward (its cache
lives as long as one autocast context), and a bf16 ``F.linear`` then writes
the bias into its output before the product and a GELU reads and writes it
again. Without autograd (``torch.no_grad`` / ``torch.inference_mode``) the
layers here run oneDNN's linear with the bias (float32, added to the float32
accumulator) and the exact GELU fused into the product, on bf16 weights kept
from one forward to the next. The copy is rebuilt when any of its float32
sources changes: an in-place update (optimizer step, ``load_state_dict``)
bumps the tensor's version, a replaced tensor (``.data = ...``, ``.to()``)
has another storage, and every ``train()`` / ``eval()`` call drops the
copies. Writes through ``.data`` (``p.data.copy_``) bump no version: the
``eval()`` call mmengine's loops make before each validation covers hooks
that swap weights that way (``EMAHook``); other code that does so must call
``model.eval()`` again before the next forward. It holds half the bytes of
the float32 weights it copies, until then.
"""
import weakref
from functools import lru_cache
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
from torch.multiprocessing.reductions import StorageWeakRef

from .norm import autocast_dtype

Tensor = torch.Tensor
Stamp = List[Tuple[StorageWeakRef, int, int]]

# owner module -> key -> (stamp of the sources, bf16 weight, float32 bias);
# weak keys: a deep copy or pickle of the model carries no cache, and a
# dropped model frees its copies
_CACHE: 'weakref.WeakKeyDictionary[nn.Module, Dict[str, tuple]]' = \
    weakref.WeakKeyDictionary()


@lru_cache(maxsize=None)
def _onednn_bf16() -> bool:
    return (torch.backends.mkldnn.is_available()
            and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def bf16_inference(x: Tensor) -> bool:
    """Whether ``x`` runs the CPU bf16 inference path: on the CPU, under
    bf16 autocast, autograd off, oneDNN with bf16 support."""
    return (x.device.type == 'cpu' and not torch.is_grad_enabled()
            and autocast_dtype('cpu') == torch.bfloat16 and _onednn_bf16())


def _stamp(tensors: Sequence[Tensor]) -> Stamp:
    """What identifies the contents of ``tensors``: storage (held weakly,
    so that no new storage can take its address), data pointer, version.
    """
    return [(StorageWeakRef(t.untyped_storage()), t.data_ptr(), t._version)
            for t in tensors]


def _cacheable(t: Tensor) -> bool:
    """Whether a bf16 copy of ``t`` may be kept: ``t`` has a version to
    watch (not made under ``torch.inference_mode``) and is a whole
    parameter of its own: neither a view into a sharded flat buffer
    (FSDP) nor a DeepSpeed ZeRO-3 parameter (``ds_id``), gathered for the
    forward only; a kept copy would hold the full weights that sharding
    frees."""
    return (not t.is_inference() and not hasattr(t, 'ds_id')
            and t.storage_offset() == 0 and
            t.untyped_storage().nbytes() == t.numel() * t.element_size())


def cached_bf16(owner: nn.Module, key: str,
                linears: Sequence[nn.Linear]) -> Tuple[Tensor, Tensor]:
    """The weights of ``linears`` stacked along the output features,
    (sum O, I) bf16, and their biases, (sum O,) float32, for
    :func:`fused_linear` only: kept with ``owner`` under ``key`` until one
    of them changes, the weight in oneDNN's blocked layout (5-7% faster
    products than the plain one).

    Weights that are not :func:`_cacheable` are cast anew (plain layout)
    on every call.
    """
    sources = [t for m in linears for t in (m.weight, m.bias)]
    if not all(map(_cacheable, sources)):
        return _stack(linears)
    stamp = _stamp(sources)
    entries = _CACHE.setdefault(owner, {})
    entry = entries.get(key)
    if entry is None or entry[0] != stamp:
        weight, bias = _stack(linears)
        weight = torch.ops.mkldnn._reorder_linear_weight(weight)
        entries[key] = entry = (stamp, weight, bias)
    return entry[1], entry[2]


def _stack(linears: Sequence[nn.Linear]) -> Tuple[Tensor, Tensor]:
    return (torch.cat([m.weight for m in linears]).to(torch.bfloat16),
            torch.cat([m.bias for m in linears]).float())


def fused_linear(x: Tensor, weight: Tensor, bias: Tensor,
                 gelu: bool = False) -> Tensor:
    """``x W^T + b`` (then the exact GELU) in one oneDNN call, bf16 out.

    Args:
        x: (..., I), cast to bf16.
        weight: (O, I) bf16, plain or from :func:`cached_bf16`.
        bias: (O,) float32.
        gelu: apply the exact (erf) GELU before rounding to bf16.
    """
    return torch.ops.mkldnn._linear_pointwise(
        x.to(torch.bfloat16), weight, bias, 'gelu' if gelu else 'none', [],
        'none' if gelu else '')


class BF16WeightCacheOwner(nn.Module):
    """A module whose bf16 weight copies (:func:`cached_bf16`) are
    dropped on every ``train()`` / ``eval()`` call."""

    def train(self, mode: bool = True) -> 'BF16WeightCacheOwner':
        _CACHE.pop(self, None)
        return super().train(mode)


class AutocastLinear(BF16WeightCacheOwner, nn.Linear):
    """``nn.Linear`` whose CPU bf16 inference reuses a bf16 copy of its
    weight and adds the bias inside the product (see the module doc);
    everywhere else (float32, autograd on, other devices) ``nn.Linear``.
    """

    def bf16_weights(self) -> Tuple[Tensor, Tensor]:
        """(O, I) bf16 weight (oneDNN layout) and (O,) float32 bias, cached."""
        return cached_bf16(self, 'weight', [self])

    def forward(self, x: Tensor) -> Tensor:
        if bf16_inference(x):
            return fused_linear(x, *self.bf16_weights())
        return super().forward(x)
