"""Training BEiT v2's VQ-KD tokenizer by distilling a teacher's features.

:class:`VQKDTrainer` is the official ``VQKD`` of ``modeling_vqkd.py`` in
training mode: encoder, ``encode_task_layer``, the EMA codebook, decoder and
``decode_task_layer`` under the official names, so that
:func:`vqkd_official_state` of its weights is a file in the released layout
(loaded by :class:`~beit3_mm.models.selfsup.VQKDTokenizer` and by the
official code). The teacher is any registered backbone (with an optional
neck), built from config and loaded through its own ``init_cfg``.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from mmengine.model import BaseModel

from beit3_mm.registry import MODELS
from .vqkd import VQKDEncoderMixin, _init_linear_and_norm

Tensor = torch.Tensor

# the official ScalingLayerForClip (CLIP's input normalisation), in pixels
CLIP_MEAN = (0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255)
CLIP_STD = (0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255)

# the top-level modules of the official file, in its key order
OFFICIAL_PREFIXES = ('encoder.', 'decoder.', 'quantize.',
                     'encode_task_layer.', 'decode_task_layer.')


def cosine_rec_loss(rec: Tensor, target: Tensor) -> Tensor:
    """The official ``calculate_rec_loss`` ('cosine'): mean over all tokens
    of ``1 - cos(rec, target)``; both (B, N, C)."""
    rec = F.normalize(rec, p=2, dim=-1)
    target = F.normalize(target, p=2, dim=-1)
    return (1 - (rec * target).sum(-1)).mean()


def vqkd_official_state(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """The official ``VQKD`` weights (what ``{'model': ...}`` of a released
    tokenizer file holds) from a :class:`VQKDTrainer` state dict: the
    teacher (``teacher_*``) is left out, as in the released files.

    Raises:
        KeyError: ``state`` lacks one of the official modules (not a
            VQ-KD trainer's weights).
    """
    out = {k: v for k, v in state.items() if k.startswith(OFFICIAL_PREFIXES)}
    missing = [p for p in OFFICIAL_PREFIXES
               if not any(k.startswith(p) for k in out)]
    if missing:
        raise KeyError(f'not VQ-KD trainer weights: no {", ".join(missing)}'
                       f' keys (its modules: '
                       f'{sorted({k.split(".")[0] for k in state})})')
    return out


@MODELS.register_module()
class VQKDTrainer(VQKDEncoderMixin, BaseModel):
    """Trains BEiT v2's VQ-KD tokenizer (`BEiT v2
    <https://arxiv.org/abs/2208.06366>`_): the codes of the encoder's patch
    features must let the decoder reconstruct the teacher's patch features.

    images -> encoder (:class:`VQKDViT`) -> ``encode_task_layer`` (Linear -
    Tanh - Linear to ``embed_dims``) -> l2-normalised EMA codebook
    (:class:`NormEMAVectorQuantizer`: k-means init on the first batch, EMA
    updates in training) -> decoder (a :class:`VQKDViT` with patch size 1
    over the codes on the patch grid, ``decoder_depth`` layers) ->
    ``decode_task_layer`` (Linear - Tanh - Linear to ``decoder_out_dims``).

    Loss (official ``VQKD.forward``): ``loss_quant`` (the commitment loss
    ``beta * mse(z_q, z)``) + ``loss_rec`` (mean of ``1 - cos`` between the
    reconstruction and the teacher's patch features).

    Inputs: images in [-1, 1] (``pixel / 127.5 - 1``, the official
    ``process_type='default'``; a data preprocessor with mean = std = 127.5
    and RGB order). The teacher sees its own view of the same pixels,
    ``(pixel - teacher_mean) / teacher_std`` with ``pixel = (x + 1) * 127.5``
    clamped to [0, 255] (the official ``ScalingLayerForClip`` /
    ``ScalingLayerForIM``). Its features are the patch tokens of the last
    output of ``teacher`` ((B, C, h, w) feature map, e.g. ``out_type=
    'featmap'`` of mmpretrain's ``VisionTransformer`` or of ``BEiT3``; or
    (B, h * w, C) tokens), then ``teacher_neck`` if given (e.g. mmpretrain's
    ``CLIPProjection``: CLIP's ``ln_post`` tokens ``@ proj``, the official
    CLIP target). The teacher is frozen and stays in eval mode.

    Codebook usage: the codes of every training batch are counted per rank
    in :attr:`code_counts` (reset by :meth:`reset_code_counts`);
    ``CodebookUsageHook`` sums them over the ranks each epoch.

    The weights in the official layout: :meth:`official_state_dict`.

    Args:
        teacher (dict): the teacher backbone config, weights through its
            ``init_cfg`` (e.g. ``dict(type='Pretrained', checkpoint=...,
            prefix='visual.')``).
        teacher_neck (dict, optional): applied to the (B, N, C) teacher
            tokens; its output (or the first of a tuple) is the target.
        teacher_mean (Sequence[float]): the teacher's input mean, in pixels.
            Defaults to CLIP's.
        teacher_std (Sequence[float]): the teacher's input std, in pixels.
            Defaults to CLIP's.
        arch (str | dict): encoder arch, see :class:`VQKDViT`; the decoder
            has its width and heads. Defaults to 'base'.
        img_size (int): encoder input size. Defaults to 224.
        num_embed (int): codebook size. Defaults to 8192.
        embed_dims (int): code dimension. Defaults to 32.
        decay (float): EMA decay of the codebook. Defaults to 0.99.
        beta (float): weight of the commitment loss. Defaults to 1.
        quantize_kmeans_init (bool): k-means init of the codebook on the
            first batch (official ``--quantize_kmeans_init``). Defaults to
            True.
        decoder_depth (int): decoder layers: 1 or 3 in the released
            tokenizers. Defaults to 3.
        decoder_out_dims (int): the teacher's feature dims: 512 for CLIP
            ViT-B/16 (after its projection), 768 for DINO ViT-B/16.
            Defaults to 512.
        data_preprocessor (dict, optional): see above.
        init_cfg (dict, optional): mmengine init config of the whole model.
    """

    def __init__(self,
                 teacher: dict,
                 teacher_neck: Optional[dict] = None,
                 teacher_mean: Sequence[float] = CLIP_MEAN,
                 teacher_std: Sequence[float] = CLIP_STD,
                 arch: Union[str, dict] = 'base',
                 img_size: int = 224,
                 num_embed: int = 8192,
                 embed_dims: int = 32,
                 decay: float = 0.99,
                 beta: float = 1.0,
                 quantize_kmeans_init: bool = True,
                 decoder_depth: int = 3,
                 decoder_out_dims: int = 512,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self._build_vqkd(arch, img_size, num_embed, embed_dims, beta, decay,
                         quantize_kmeans_init, decoder_depth,
                         decoder_out_dims)

        self.teacher_model = MODELS.build(teacher)
        self.teacher_neck = (MODELS.build(teacher_neck)
                             if teacher_neck is not None else None)
        for part in self.teacher_parts():
            part.requires_grad_(False)
            part.eval()
        self.register_buffer(
            'teacher_mean', torch.tensor(teacher_mean).view(1, -1, 1, 1),
            persistent=False)
        self.register_buffer(
            'teacher_std', torch.tensor(teacher_std).view(1, -1, 1, 1),
            persistent=False)
        # a plain attribute, not a buffer: DDP would broadcast rank 0's
        self.code_counts: Optional[Tensor] = None

    def teacher_parts(self) -> List[nn.Module]:
        """The frozen modules: the teacher and its neck."""
        return [m for m in (self.teacher_model, self.teacher_neck)
                if m is not None]

    def train(self, mode: bool = True) -> 'VQKDTrainer':
        """The teacher stays in eval mode."""
        super().train(mode)
        for part in self.teacher_parts():
            part.eval()
        return self

    def init_weights(self) -> None:
        """The official init of the encoder, decoder and task layers; the
        teacher loads through its own ``init_cfg`` (and a ``Pretrained``
        ``init_cfg`` of this model, applied last, over all)."""
        if not self._is_init:
            self.encode_task_layer.apply(_init_linear_and_norm)
            self.decode_task_layer.apply(_init_linear_and_norm)
        super().init_weights()

    # ------------------------------------------------------------ forward
    @torch.no_grad()
    def teacher_features(self, images: Tensor) -> Tensor:
        """The regression target (B, h * w, C) of images (B, 3, H, W) in
        [-1, 1]: the official ``get_regress_target``."""
        pixels = ((images + 1) * 127.5).clamp(0, 255)
        out = self.teacher_model((pixels - self.teacher_mean) /
                                 self.teacher_std)
        feats = out[-1] if isinstance(out, (tuple, list)) else out
        if feats.dim() == 4:
            feats = feats.flatten(2).transpose(1, 2)
        if self.teacher_neck is not None:
            feats = self.teacher_neck(feats)
            feats = feats[0] if isinstance(feats, (tuple, list)) else feats
        return feats

    def encode(self, images: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """The official ``encode``: quantized codes (B, embed_dims, h, w)
        with a straight-through gradient, their indices (B * h * w,) and
        the commitment loss."""
        z = rearrange(self.encode_features(images), 'b (h w) c -> b c h w',
                      h=images.shape[-2] // self.encoder.patch_size)
        z_q, loss, indices = self.quantize(z)
        return z_q, indices, loss

    def decode(self, z_q: Tensor) -> Tensor:
        """Codes (B, embed_dims, h, w) -> reconstruction (B, h * w,
        decoder_out_dims)."""
        return self.decode_task_layer(self.decoder(z_q))

    def forward(self,
                inputs: Tensor,
                data_samples: Optional[list] = None,
                mode: str = 'tensor'):
        """'loss': :meth:`loss`; 'tensor': :meth:`get_codebook_indices`."""
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'tensor':
            return self.get_codebook_indices(inputs)
        raise RuntimeError(f'VQKDTrainer has no mode {mode!r}: use "loss" '
                           f'to train or "tensor" for the codes')

    def loss(self, inputs: Tensor,
             data_samples: Optional[list] = None) -> Dict[str, Tensor]:
        """``loss_quant`` and ``loss_rec`` of images (B, 3, H, W) in
        [-1, 1]; in training, counts the batch's codes."""
        target = self.teacher_features(inputs)
        z_q, indices, loss_quant = self.encode(inputs)
        rec = self.decode(z_q)
        if target.shape != rec.shape:
            raise ValueError(
                f'the teacher gives features of shape {tuple(target.shape)},'
                f' the decoder reconstructs {tuple(rec.shape)}: set '
                f'decoder_out_dims to the teacher\'s feature dims and give '
                f'the teacher the encoder\'s patch grid')
        if self.training:
            self.count_codes(indices)
        return dict(loss_quant=loss_quant,
                    loss_rec=cosine_rec_loss(rec, target))

    # -------------------------------------------------------- code usage
    @torch.no_grad()
    def count_codes(self, indices: Tensor) -> None:
        """Add ``indices`` (any shape, int64) to :attr:`code_counts`."""
        counts = torch.bincount(indices.flatten(), minlength=self.num_embed)
        if self.code_counts is None:
            self.code_counts = counts
        else:
            self.code_counts += counts

    def reset_code_counts(self) -> None:
        """Start counting afresh (zeros, this rank)."""
        self.code_counts = torch.zeros(
            self.num_embed, dtype=torch.long,
            device=self.quantize.embedding.weight.device)

    def official_state_dict(self) -> Dict[str, Tensor]:
        """The weights in the official layout: see
        :func:`vqkd_official_state`."""
        return vqkd_official_state(self.state_dict())
