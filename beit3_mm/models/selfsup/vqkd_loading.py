"""Reading BEiT v2 tokenizer files into :class:`VQKDTokenizer`.

The released files (``vqkd_encoder_base_decoder_{1x,3x}768x12_clip.pth``,
``vqkd_encoder_base_decoder_1x768x12_dino.pth``) hold ``{'model': state}``
with the keys of the official ``modeling_vqkd.py``: ``encoder.*``,
``encode_task_layer.*``, ``quantize.cluster_size``,
``quantize.embedding.{weight,cluster_size,embed_avg,initted}``,
``decoder.*`` and ``decode_task_layer.*``; official training checkpoints
may add ``teacher_model.*`` and ``scaling_layer.*``, which the official
tokenizer loader drops (with ``loss*``), as this one does. mmpretrain's
``VQKD`` checkpoints (e.g. its ``vqkd_encoder.pth``) use other names:
:func:`mmpretrain_to_official` maps them.
"""
import re
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.logging import MMLogger, print_log

from beit3_mm.utils import read_checkpoint
from ..utils.weight_loading import (CheckpointMismatchError, check_shapes,
                                     model_state_dict, summarize_keys,
                                     top_level_names)

Tensor = torch.Tensor
StateDict = Dict[str, Tensor]

# tokenizer-training parts, loaded only into a model that has them
DECODER_PREFIXES = ('decoder.', 'decode_task_layer.')
# dropped by the official tokenizer loader (``as_tokenzer=True``)
TRAINING_PREFIXES = ('loss', 'teacher', 'scaling')
# codebook statistics that mmpretrain's quantizer does not keep; the
# tokenizer never reads them
STATISTICS = ('quantize.embedding.cluster_size',
              'quantize.embedding.embed_avg')

_MMPRETRAIN_TO_OFFICIAL = (
    (r'^encoder\.patch_embed\.projection\.', 'encoder.patch_embed.proj.'),
    (r'^encoder\.layers\.(\d+)\.ln1\.', r'encoder.blocks.\1.norm1.'),
    (r'^encoder\.layers\.(\d+)\.ln2\.', r'encoder.blocks.\1.norm2.'),
    (r'^encoder\.layers\.(\d+)\.ffn\.layers\.0\.0\.',
     r'encoder.blocks.\1.mlp.fc1.'),
    (r'^encoder\.layers\.(\d+)\.ffn\.layers\.1\.',
     r'encoder.blocks.\1.mlp.fc2.'),
    (r'^encoder\.layers\.', 'encoder.blocks.'),
    # final_norm + out_type='featmap' normalises the patch tokens
    (r'^encoder\.ln1\.', 'encoder.fc_norm.'),
)


def is_mmpretrain_layout(state: StateDict) -> bool:
    """Whether ``state`` holds mmpretrain ``VQKD`` keys."""
    return any(k.startswith('encoder.layers.') for k in state)


def mmpretrain_to_official(state: StateDict) -> StateDict:
    """mmpretrain ``VQKD`` keys (``BEiTViT`` encoder with ``final_norm``,
    ``out_type='featmap'``, no layer scale) -> official keys."""
    out = {}
    for k, v in state.items():
        for pattern, repl in _MMPRETRAIN_TO_OFFICIAL:
            k, n = re.subn(pattern, repl, k)
            if n:
                break
        out[k] = v
    return out


def fit_vqkd_state(state: StateDict, model: torch.nn.Module,
                   source: str) -> Tuple[StateDict, List[str], List[str]]:
    """Check a tokenizer state dict (official or mmpretrain keys) against
    ``model``.

    Returns:
        tuple: the state dict to load, the keys ``model`` may keep at their
        init (mmpretrain's missing codebook statistics) and notes for the
        log.

    Raises:
        CheckpointMismatchError: not a tokenizer file, keys missing or
            unexpected, shapes that differ, or an empty codebook; one line
            naming the keys.
    """
    if not any(k.startswith(('encoder.', 'quantize.')) for k in state):
        raise CheckpointMismatchError(
            f'{source} is not a VQ-KD tokenizer file (no encoder.* / '
            f'quantize.* keys; its modules: {top_level_names(list(state))}): '
            f'give a BEiT v2 tokenizer such as '
            f'vqkd_encoder_base_decoder_3x768x12_clip.pth')
    notes, may_miss = [], []
    if is_mmpretrain_layout(state):
        state = mmpretrain_to_official(state)
        notes.append('mapped mmpretrain VQKD keys to the official names')
        may_miss = [k for k in STATISTICS if k not in state]
    target = model.state_dict()
    kept, decoder, training, unexpected = {}, [], [], []
    for k, v in state.items():
        if k in target:
            kept[k] = v
        elif k.startswith(DECODER_PREFIXES):
            decoder.append(k)
        elif k.startswith(TRAINING_PREFIXES):
            training.append(k)
        else:
            unexpected.append(k)
    missing = [k for k in target if k not in kept and k not in may_miss]
    if missing or unexpected:
        raise CheckpointMismatchError(
            f'{source} does not fit this VQKDTokenizer (arch='
            f'{model.encoder.arch_settings}): missing '
            f'{summarize_keys(missing) or "none"}; unexpected '
            f'{summarize_keys(unexpected) or "none"}; first: '
            f'{(missing + unexpected)[0]}')
    check_shapes(
        kept, target, source, ': set arch, img_size, num_embed and '
        'embed_dims of the VQKDTokenizer to those of the file')
    if not kept['quantize.embedding.initted'].all():
        raise CheckpointMismatchError(
            f'{source}: the codebook was never initialised '
            f'(quantize.embedding.initted = 0): a tokenizer saved before '
            f'its first training step')
    if decoder:
        notes.append(f'left out the decoder (used only to train a '
                     f'tokenizer): {summarize_keys(decoder)}')
    if training:
        notes.append(f'left out training-only keys: '
                     f'{summarize_keys(training)}')
    if may_miss:
        notes.append(f'not in the file, kept at init (unused by the '
                     f'tokenizer): {", ".join(may_miss)}')
    return kept, may_miss, notes


def load_vqkd_checkpoint(model: torch.nn.Module,
                         path: str,
                         prefix: Optional[str] = None,
                         logger: Optional[MMLogger] = None) -> List[str]:
    """Load a BEiT v2 tokenizer file into ``model`` (a ``VQKDTokenizer``),
    reading it with ``weights_only=True``.

    Args:
        model: the tokenizer.
        path (str): a released file, an official training checkpoint
            (``model``), an mmengine checkpoint (``state_dict``) or a flat
            state dict, with official or mmpretrain ``VQKD`` keys.
        prefix (str, optional): take the keys under this prefix, e.g.
            ``'target_generator.'`` of an mmpretrain BEiT v2 checkpoint.
        logger: where the one-line summary goes.

    Returns:
        The summary lines.

    Raises:
        FileNotFoundError: no file at ``path``.
        RuntimeError: not a readable checkpoint.
        CheckpointMismatchError: see :func:`fit_vqkd_state`.
    """
    state = model_state_dict(read_checkpoint(path), path)
    if prefix:
        sub = {k[len(prefix):]: v for k, v in state.items()
               if k.startswith(prefix)}
        if not sub:
            raise CheckpointMismatchError(
                f'{path} holds no keys under prefix {prefix!r} (its modules: '
                f'{top_level_names(list(state))})')
        state = sub
    kept, may_miss, notes = fit_vqkd_state(state, model, path)
    model.load_state_dict(kept, strict=not may_miss)
    lines = [f'loaded the VQ-KD tokenizer ({len(kept)} tensors) from {path}'
             ] + notes
    print_log('; '.join(lines), logger=logger)
    return lines
