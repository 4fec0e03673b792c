"""Reading the released BEiT-3 files into beit3_mm models.

Every released file is ``{'model': state_dict}`` with the backbone under
``beit3.`` and task heads at the top level; the official training script's
full checkpoints add ``optimizer``, ``args``, ``epoch`` and ``scaler``;
beit3_mm's own (mmengine) checkpoints put the backbone under ``backbone.``.
These helpers find the backbone part in any of them, fit it to a given
:class:`~beit3_mm.models.BEiT3` and say what they left out.
"""
import re
from collections import Counter
from typing import Any, Dict, List, Optional, Tuple

import torch
from mmengine.logging import MMLogger, print_log

from beit3_mm.utils import read_checkpoint
from ..layers import (resize_rel_pos, resize_vision_pos_table,
                      vision_table_grid)

Tensor = torch.Tensor
StateDict = Dict[str, Tensor]

BACKBONE_PREFIXES = ('beit3.', 'backbone.')
BACKBONE_ROOTS = ('text_embed.', 'vision_embed.', 'encoder.')
VISION_POS_KEY = 'encoder.embed_positions.A.weight'
_LANGUAGE_KEY = re.compile(r'^text_embed\.|(^|\.)B\.')
# relative position tables of dense backbones (use_rel_pos), which released
# files do not hold
_REL_POS_KEY = re.compile(r'\.self_attn\.rel_pos\.[hw]$')


def is_language_key(key: str) -> bool:
    """Whether a backbone key belongs to the language half."""
    return bool(_LANGUAGE_KEY.search(key))


def model_state_dict(ckpt: Any, path: str) -> StateDict:
    """The model weights of a released, official-training or mmengine file."""
    if isinstance(ckpt, dict):
        for key in ('model', 'state_dict', 'module'):
            if isinstance(ckpt.get(key), dict):
                return ckpt[key]
        if ckpt and all(isinstance(v, Tensor) for v in ckpt.values()):
            return ckpt
    raise ValueError(
        f'{path}: no model weights found; expected a dict with "model" '
        f'(released files), "state_dict" (mmengine) or a flat state dict, '
        f'got keys {list(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt)}')


def split_backbone(state: StateDict) -> Tuple[StateDict, StateDict]:
    """Split into (backbone keys without their prefix, all other keys)."""
    for prefix in BACKBONE_PREFIXES:
        if any(k.startswith(prefix) for k in state):
            break
    else:
        prefix = ''
    backbone, others = {}, {}
    for k, v in state.items():
        if prefix and k.startswith(prefix):
            backbone[k[len(prefix):]] = v
        elif not prefix and k.startswith(BACKBONE_ROOTS):
            backbone[k] = v
        else:
            others[k] = v
    return backbone, others


def summarize_keys(keys: List[str]) -> str:
    """Keys counted by module, e.g. 'mim_head.* (2), encoder.layers.* (80)'.
    """
    counts = Counter(
        '.'.join(k.split('.')[:-1][:2]) + '.*' if '.' in k else k
        for k in keys)
    return ', '.join(f'{g} ({n})' for g, n in sorted(counts.items()))


def fit_backbone_state(backbone: StateDict, others: StateDict, model,
                       source: str) -> Tuple[StateDict, List[str]]:
    """Fit released backbone weights to ``model`` (a ``BEiT3``).

    Drops the language half for a vision-only model, the output norm for a
    model without one, relative position tables for a model without them
    and the source model's modules outside the BEiT-3 core (``fc_norm``, an
    adapter) that ``model`` lacks; takes the released classifier's
    top-level ``fc_norm`` for a model that has one, and resizes the vision
    position table to the model's grid and relative position tables to the
    model's lengths. A model's relative position tables that the file lacks
    keep their init (zero).

    Returns:
        The state dict to load (strictly, except a missing ``fc_norm``) and
        the lines of a summary.

    Raises:
        KeyError: a backbone key of the model is missing from the file, or
            the file holds backbone keys the model does not have.
        ValueError: a shape that cannot be mapped.
    """
    target = model.state_dict()
    state, notes = {}, []
    dropped = Counter()
    if model.fc_norm is not None and 'fc_norm.weight' not in backbone:
        backbone = dict(backbone, **{
            k: v for k, v in others.items() if k.startswith('fc_norm.')})
    unexpected, extra = [], []
    for k, v in backbone.items():
        if k in target:
            state[k] = v
        elif not model.with_language and is_language_key(k):
            dropped['the language half (with_language=False)'] += 1
        elif k.startswith('encoder.layer_norm.') and not model.output_norm:
            dropped['the output norm encoder.layer_norm (output_norm=False)'
                    ] += 1
        elif _REL_POS_KEY.search(k):
            dropped['relative position tables (the model has none)'] += 1
        elif not k.startswith(BACKBONE_ROOTS):
            # the source model's own modules around the BEiT-3 core (a
            # classifier's fc_norm, a dense adapter), e.g. an mm checkpoint
            # initialising another task's backbone
            extra.append(k)
        else:
            unexpected.append(k)
    if unexpected:
        raise KeyError(f'{source} holds backbone keys that this BEiT3 '
                       f'(arch={model.arch_settings}) does not have: '
                       f'{summarize_keys(unexpected)}; first: {unexpected[0]}')

    if VISION_POS_KEY in state:
        table = state[VISION_POS_KEY]
        src = vision_table_grid(table.shape[0])
        if src != tuple(model.patch_resolution):
            state[VISION_POS_KEY] = resize_vision_pos_table(
                table, src, model.patch_resolution)
            notes.append(f'vision position table resized from grid {src} to '
                         f'{tuple(model.patch_resolution)}')

    for k in [k for k in state if _REL_POS_KEY.search(k)]:
        if state[k].shape[0] != target[k].shape[0]:
            notes.append(f'{k} resized from {state[k].shape[0]} to '
                         f'{target[k].shape[0]} offsets')
            state[k] = resize_rel_pos(state[k], target[k].shape[0])

    missing = [k for k in target if k not in state]
    # Keys outside the backbone roots (fc_norm, a dense adapter) are the
    # model's own modules, which no released file holds; nor does it hold
    # relative position tables.
    fresh = [k for k in missing if not k.startswith(BACKBONE_ROOTS)]
    fresh_rel_pos = [k for k in missing if _REL_POS_KEY.search(k)]
    missing = [
        k for k in missing if k not in fresh and k not in fresh_rel_pos
    ]
    if missing:
        raise KeyError(f'{source} lacks {len(missing)} backbone keys the '
                       f'model needs: {summarize_keys(missing)}; first: '
                       f'{missing[0]}')
    for k, v in state.items():
        if v.shape != target[k].shape:
            raise ValueError(f'{source}: {k} has shape {tuple(v.shape)}, the '
                             f'model expects {tuple(target[k].shape)}')
    notes += [f'left out {what}: {n} tensors' for what, n in dropped.items()]
    if extra:
        notes.append(f'left out modules this model does not have: '
                     f'{summarize_keys(extra)}')
    if fresh:
        notes.append(f'new in this model, not in the file (they keep their '
                     f'init): {summarize_keys(fresh)}')
    if fresh_rel_pos:
        notes.append(f'relative position tables new in this model, not in '
                     f'the file (they start at zero): {len(fresh_rel_pos)} '
                     f'tensors')
    return state, notes


def read_beit3_file(path: str) -> Tuple[StateDict, StateDict]:
    """Safely read any BEiT-3 file: (backbone keys, all other keys)."""
    backbone, others = split_backbone(
        model_state_dict(read_checkpoint(path), path))
    if not backbone:
        raise KeyError(f'{path} holds no BEiT-3 backbone keys (looked for '
                       f'prefixes {BACKBONE_PREFIXES} and roots '
                       f'{BACKBONE_ROOTS})')
    return backbone, others


def load_beit3_checkpoint(model,
                          path: str,
                          logger: Optional[MMLogger] = None) -> List[str]:
    """Load the backbone part of any BEiT-3 file into ``model``.

    Args:
        model (BEiT3): the backbone.
        path (str): a released file, an official training checkpoint or a
            beit3_mm (mmengine) checkpoint.
        logger: where the one-paragraph summary goes.

    Returns:
        The summary lines.
    """
    backbone, others = read_beit3_file(path)
    state, notes = fit_backbone_state(backbone, others, model, path)
    model.load_state_dict(state, strict=False)
    heads = [k for k in others if not k.startswith('fc_norm.')]
    if heads:
        notes.append(f'left out non-backbone keys: {summarize_keys(heads)}')
    lines = [f'loaded {len(state)} BEiT-3 backbone tensors from {path}'
             ] + notes
    print_log('; '.join(lines), logger=logger)
    return lines


def load_beit3_model(model,
                     path: str,
                     logger: Optional[MMLogger] = None) -> List[str]:
    """Load a BEiT-3 file into a task model: ``model.backbone`` (a BEiT3)
    plus every head of ``model`` that the file holds under the same name.

    Released task heads sit at the top level of the file under the names
    the beit3_mm models use (``vision_head.weight``, ``pooler.dense.bias``,
    ...), and so do those of a converted or beit3_mm checkpoint. Heads the
    file lacks keep their init; file keys the model has no place for
    (e.g. ``mim_head`` in a pretraining file) are left out. Both are logged.

    Raises:
        KeyError / ValueError: as :func:`fit_backbone_state`; ValueError
            also for a head whose shape differs from the model's.
    """
    backbone, others = read_beit3_file(path)
    state, notes = fit_backbone_state(backbone, others, model.backbone, path)
    model.backbone.load_state_dict(state, strict=False)

    target = {
        k: v
        for k, v in model.state_dict().items()
        if not k.startswith(('backbone.', 'data_preprocessor.'))
    }
    heads, unused = {}, []
    for k, v in others.items():
        if k not in target:
            unused.append(k)
        elif v.shape != target[k].shape:
            raise ValueError(f'{path}: {k} has shape {tuple(v.shape)}, the '
                             f'model expects {tuple(target[k].shape)} (a '
                             f'head for another number of classes?)')
        else:
            heads[k] = v
    model.load_state_dict(heads, strict=False)
    fresh = [k for k in target if k not in heads]
    if heads:
        notes.append(f'loaded heads: {summarize_keys(list(heads))}')
    if fresh:
        notes.append(f'new heads (not in the file): {summarize_keys(fresh)}')
    if unused:
        notes.append(f'left out: {summarize_keys(unused)}')
    lines = [f'loaded {len(state)} BEiT-3 backbone tensors from {path}'
             ] + notes
    print_log('; '.join(lines), logger=logger)
    return lines
