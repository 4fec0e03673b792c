"""Reading the released BEiT-3 files into beit3_mm models.

Every released file is ``{'model': state_dict}`` with the backbone under
``beit3.`` and task heads at the top level; the official training script's
full checkpoints add ``optimizer``, ``args``, ``epoch`` and ``scaler``;
beit3_mm's own (mmengine) checkpoints put the backbone under ``backbone.``.
:func:`released_to_mm` maps a released state dict to beit3-mm names, the
one mapping of ``init_cfg`` and of ``tools/model_converters/beit3_to_mm.py``;
the loaders here find the backbone part of any file, fit it to a given
:class:`~beit3_mm.models.BEiT3` and say what they left out.

mmengine loads ``load_from``, resumed and tested checkpoints non-strictly
and only warns about keys and shapes that do not match: every
:class:`~beit3_mm.models.BEiT3` checks with :func:`check_backbone_state`
that a state dict loaded into it holds its weights, and says what the
state dict is otherwise.
"""
import re
from collections import Counter
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.logging import MMLogger, print_log

from beit3_mm.utils import (last_checkpoint_read, read_checkpoint,
                            weight_shapes)
from ..layers import (resize_rel_pos, resize_vision_pos_table,
                      vision_table_grid)

Tensor = torch.Tensor
StateDict = Dict[str, Tensor]

BACKBONE_PREFIXES = ('beit3.', 'backbone.')
BACKBONE_ROOTS = ('text_embed.', 'vision_embed.', 'encoder.')
VISION_POS_KEY = 'encoder.embed_positions.A.weight'
PATCH_KERNEL_KEY = 'vision_embed.proj.weight'
_LANGUAGE_KEY = re.compile(r'^text_embed\.|(^|\.)B\.')
# relative position tables of dense backbones (use_rel_pos), which released
# files do not hold
_REL_POS_KEY = re.compile(r'\.self_attn\.rel_pos\.[hw]$')
CONVERTER = 'tools/model_converters/beit3_to_mm.py'


class CheckpointMismatchError(ValueError):
    """Weights that do not belong to the model they are loaded into."""


def describe_source(state_dict: Dict[str, Any]) -> Tuple[str, dict]:
    """The name and :func:`~beit3_mm.utils.weight_shapes` of the weights a
    ``load_state_dict`` hook got.

    Modules see only the keys under their prefix. When all of them are
    keys of the checkpoint file read last (:func:`~beit3_mm.utils.
    last_checkpoint_read`), as for every mmengine entry (``load_from``,
    resume, ``tools/test.py``, ``load_checkpoint``, the inferencers), that
    file is named and described whole; none (a released file's ``model``
    entry holds them all) counts as all. Else it is 'the state dict'.
    """
    read = last_checkpoint_read()
    if read is not None and all(k in read.shapes for k in state_dict):
        return read.path, read.shapes
    return 'the state dict', weight_shapes(state_dict)


def top_level_names(keys: List[str], limit: int = 8) -> str:
    """'backbone, head' for keys 'backbone.*' and 'head.*'."""
    names = sorted({k.split('.')[0] for k in keys})
    more = f', ... ({len(names)} in all)' if len(names) > limit else ''
    return ', '.join(names[:limit]) + more if names else 'none'


def check_backbone_state(backbone, state_dict: Dict[str, Any], prefix: str,
                         *args) -> None:
    """``load_state_dict`` pre-hook of :class:`~beit3_mm.models.BEiT3`.

    Raises:
        CheckpointMismatchError: the state dict holds fewer than half of
            the backbone's BEiT-3 keys (``BACKBONE_ROOTS``) under
            ``prefix`` with the backbone's shapes; the one-line message
            says whether it looks like a released file, a BEiT-3 of
            another size or another model, and what to do.
    """
    own = {
        k: tuple(v.shape)
        for k, v in backbone.state_dict().items()
        if k.startswith(BACKBONE_ROOTS)
    }
    named = [k for k in own if prefix + k in state_dict]
    fitting = [
        k for k in named if isinstance(state_dict[prefix + k], Tensor)
        and tuple(state_dict[prefix + k].shape) == own[k]
    ]
    if 2 * len(fitting) >= len(own):
        return
    source, shapes = describe_source(state_dict)
    found = (f'{len(fitting)} of the {len(own)} BEiT-3 tensors of this '
             f'{type(backbone).__name__} fit under {prefix!r}')
    if any(k.startswith('beit3.') for k in shapes):
        file = source if source != 'the state dict' else 'FILE'
        raise CheckpointMismatchError(
            f'{source} is a released BEiT-3 file (keys beit3.*), not a '
            f'beit3-mm checkpoint ({found}): convert it with python '
            f'{CONVERTER} {file} OUT.pth, or initialise the backbone from '
            f"it with init_cfg=dict(type='Pretrained', checkpoint='{file}') "
            f'(model.backbone.init_cfg; model.init_cfg for the '
            f'vision-language models)')
    if 2 * len(named) >= len(own):
        k = next(k for k in named if k not in fitting)
        raise CheckpointMismatchError(
            f'{source} holds a BEiT-3 of another size ({found}; the names '
            f'match, the shapes do not, e.g. {prefix + k}: '
            f'{shapes.get(prefix + k)} there, {own[k]} here): give a '
            f'checkpoint of this arch, or set the arch that the checkpoint '
            f'was trained with')
    raise CheckpointMismatchError(
        f'{source} is a checkpoint of another model ({found}; its modules: '
        f'{top_level_names(list(shapes))}): give a checkpoint of this model')


def resize_patch_kernel(kernel: Tensor, patch_size: int) -> Tensor:
    """FlexiViT's resize of a patch-embedding kernel (C, C_in, p, p) to
    (C, C_in, patch_size, patch_size).

    With ``B`` the bicubic (antialiased) resize of a p x p patch to
    ``patch_size`` as a matrix, the new kernel is ``pinv(B^T) @ kernel``, so
    that a patch resized by ``B`` meets the new kernel as the patch met the
    old one (exactly when enlarging, least squares when shrinking); the
    formula of ``timm.layers.resample_patch_embed``.
    """
    p = kernel.shape[-1]
    basis = torch.eye(p * p, dtype=torch.float64).reshape(p * p, 1, p, p)
    resize_t = F.interpolate(
        basis, size=(patch_size, patch_size), mode='bicubic',
        antialias=True, align_corners=False).reshape(p * p, -1)
    resized = kernel.flatten(2).double() @ torch.linalg.pinv(resize_t.T)
    return resized.reshape(*kernel.shape[:2], patch_size,
                           patch_size).to(kernel.dtype)


def _is_square_kernel(kernel: Tensor, own: Tensor) -> bool:
    """Whether ``kernel`` is a square conv kernel of ``own``'s channels."""
    return (kernel.dim() == 4 and kernel.shape[:2] == own.shape[:2]
            and kernel.shape[2] == kernel.shape[3])


def fit_grid_weights(backbone, state_dict: Dict[str, Any],
                     prefix: str = '') -> List[str]:
    """Resize, in place, the weights tied to the patch grid in
    ``state_dict`` (keys under ``prefix``) that were made for another
    resolution or patch size to ``backbone``'s: the vision position table
    with the official bicubic formula (:func:`~beit3_mm.models.layers.
    resize_vision_pos_table`), relative position tables linearly
    (:func:`~beit3_mm.models.layers.resize_rel_pos`) and a square patch
    embedding kernel of another patch size with FlexiViT's pseudo-inverse
    (:func:`resize_patch_kernel`), e.g. a patch-14 giant into a patch-16
    detector.

    It is the ``load_state_dict`` pre-hook of every
    :class:`~beit3_mm.models.BEiT3`, so a released file (through
    ``init_cfg``) and a beit3-mm checkpoint of another resolution or patch
    size (through ``load_from``, resume, ``load_checkpoint``, the
    inferencers) load the same way. Tensors of another width are left to
    the shape checks.

    Returns:
        One note per resized tensor.
    """
    notes = []
    for name, own in backbone.state_dict().items():
        key = prefix + name
        value = state_dict.get(key)
        if not isinstance(value, Tensor) or value.shape == own.shape:
            continue
        if name == PATCH_KERNEL_KEY and _is_square_kernel(value, own):
            state_dict[key] = resize_patch_kernel(value, backbone.patch_size)
            notes.append(f'patch embedding kernel resized from patch '
                         f'{value.shape[-1]} to {backbone.patch_size} '
                         f'(FlexiViT pseudo-inverse)')
        elif value.shape[1:] != own.shape[1:]:
            continue
        elif name == VISION_POS_KEY:
            src = vision_table_grid(value.shape[0])
            state_dict[key] = resize_vision_pos_table(
                value, src, backbone.patch_resolution)
            notes.append(f'vision position table resized from grid {src} '
                         f'to {tuple(backbone.patch_resolution)}')
        elif _REL_POS_KEY.search(name):
            state_dict[key] = resize_rel_pos(value, own.shape[0])
            notes.append(f'{name} resized from {value.shape[0]} to '
                         f'{own.shape[0]} offsets')
    return notes


def resize_grid_weights(backbone, state_dict: Dict[str, Any], prefix: str,
                        *args) -> None:
    """``load_state_dict`` pre-hook: :func:`fit_grid_weights`, logged."""
    for note in fit_grid_weights(backbone, state_dict, prefix):
        print_log(f'{type(backbone).__name__}: {prefix}{note}',
                  logger='current')


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


# The released task of a file by its keys beside ``beit3.*``, the first
# key found naming it (a pretraining file also holds ``mlm_head``, as a
# captioning one does).
RELEASED_KINDS = (
    ('mim_head.weight', 'pretrain'),
    ('logit_scale', 'retrieval'),
    ('fc_norm.weight', 'in1k'),
    ('pooler.dense.weight', 'vqa'),
    ('head.dense1.weight', 'nlvr2'),
    ('mlm_head.weight', 'captioning'),
)


def released_kind(heads: StateDict) -> Optional[str]:
    """The released task a file comes from, by its keys beside the
    backbone's: one of ``RELEASED_KINDS``, 'backbone' for none, None for
    keys of no released task."""
    if not heads:
        return 'backbone'
    return next((kind for key, kind in RELEASED_KINDS if key in heads), None)


def released_to_mm(
        state: StateDict) -> Tuple[Optional[str], StateDict, List[str]]:
    """Map a released state dict to beit3-mm names: the one mapping of
    ``init_cfg`` (:func:`load_beit3_checkpoint`, :func:`load_beit3_model`)
    and of ``tools/model_converters/beit3_to_mm.py``.

    ``beit3.*`` becomes ``backbone.*``; task heads keep their official
    names at the top level (``mim_head``, ``mlm_head``, ``vision_head``,
    ``pooler``, ``head`` ...), except for the ImageNet classifier, an
    mmpretrain ``ImageClassifier``: ``fc_norm`` becomes ``backbone.fc_norm``
    and ``head`` ``head.fc``, and its backbone keeps the vision experts only,
    without the output norm, as the classifier runs it.

    Returns:
        The kind (:func:`released_kind`), the mapped state dict and the
        released keys left out.

    Raises:
        KeyError: no BEiT-3 backbone keys in ``state``.
    """
    backbone, others = split_backbone(state)
    if not backbone:
        raise KeyError('no BEiT-3 backbone keys (beit3.*) in the file')
    kind = released_kind(others)
    out, dropped = {}, []
    for k, v in backbone.items():
        if kind == 'in1k' and (is_language_key(k)
                               or k.startswith('encoder.layer_norm.')):
            dropped.append('beit3.' + k)
        else:
            out['backbone.' + k] = v
    for k, v in others.items():
        if kind == 'in1k':
            k = ('backbone.' + k if k.startswith('fc_norm.') else
                 k.replace('head.', 'head.fc.', 1))
        out[k] = v
    return kind, out, dropped


def summarize_keys(keys: List[str]) -> str:
    """Keys counted by module, e.g. 'mim_head.* (2), encoder.layers.* (80)'.
    """
    counts = Counter(
        '.'.join(k.split('.')[:-1][:2]) + '.*' if '.' in k else k
        for k in keys)
    return ', '.join(f'{g} ({n})' for g, n in sorted(counts.items()))


def check_shapes(state: StateDict, target: StateDict, source: str,
                 hint: str = '') -> None:
    """Refuse the first tensor of ``state`` whose shape differs from that
    of the same key in ``target`` (every key of ``state`` is in it).

    Raises:
        CheckpointMismatchError: naming the key, both shapes and ``hint``
            (what to change).
    """
    for k, v in state.items():
        if v.shape != target[k].shape:
            raise CheckpointMismatchError(
                f'{source}: {k} has shape {tuple(v.shape)}, the model '
                f'expects {tuple(target[k].shape)}{hint}')


def fit_backbone_state(backbone: StateDict, model,
                       source: str) -> Tuple[StateDict, List[str]]:
    """Fit backbone weights (keys without their prefix) to ``model`` (a
    ``BEiT3``).

    Drops the language half for a vision-only model, the output norm for a
    model without one, relative position tables for a model without them
    and the source model's modules outside the BEiT-3 core (``fc_norm``, an
    adapter) that ``model`` lacks, and resizes the weights tied to the patch
    grid to the model's (:func:`fit_grid_weights`).
    A model's relative position tables that the file lacks keep their init
    (zero).

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

    notes += fit_grid_weights(model, state)

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
    check_shapes(state, target, source)
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


def read_beit3_file(path: str) -> Tuple[StateDict, StateDict, List[str]]:
    """Safely read any BEiT-3 file, a released one through
    :func:`released_to_mm`: (backbone keys without their prefix, all other
    keys, a note on the released keys left out)."""
    state = model_state_dict(read_checkpoint(path), path)
    notes = []
    if any(k.startswith('beit3.') for k in state):
        kind, state, dropped = released_to_mm(state)
        if dropped:
            notes.append(f'left out what the released {kind} model does not '
                         f'use: {summarize_keys(dropped)}')
    backbone, others = split_backbone(state)
    if not backbone:
        raise KeyError(f'{path} holds no BEiT-3 backbone keys (looked for '
                       f'prefixes {BACKBONE_PREFIXES} and roots '
                       f'{BACKBONE_ROOTS})')
    return backbone, others, notes


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
    backbone, others, notes = read_beit3_file(path)
    state, fit_notes = fit_backbone_state(backbone, model, path)
    model.load_state_dict(state, strict=False)
    notes += fit_notes
    if others:
        notes.append(f'left out non-backbone keys: '
                     f'{summarize_keys(list(others))}')
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
    ..., :func:`released_to_mm`), and so do those of a converted or
    beit3_mm checkpoint. Heads the file lacks keep their init; file keys
    the model has no place for (e.g. ``mim_head`` in a pretraining file)
    are left out. Both are logged.

    Raises:
        KeyError / ValueError: as :func:`fit_backbone_state`; ValueError
            also for a head whose shape differs from the model's.
    """
    backbone, others, notes = read_beit3_file(path)
    state, fit_notes = fit_backbone_state(backbone, model.backbone, path)
    notes += fit_notes

    target = {
        k: v
        for k, v in model.state_dict().items()
        if not k.startswith(('backbone.', 'data_preprocessor.'))
    }
    heads = {k: v for k, v in others.items() if k in target}
    unused = [k for k in others if k not in target]
    check_shapes(heads, target, path,
                 ' (a head for another number of classes?)')
    # one load: the backbone's check sees its weights with the heads
    backbone_state = {'backbone.' + k: v for k, v in state.items()}
    model.load_state_dict({**backbone_state, **heads}, strict=False)
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
