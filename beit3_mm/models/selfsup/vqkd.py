"""BEiT v2's VQ-KD visual tokenizer
(`BEiT v2 <https://arxiv.org/abs/2208.06366>`_) as the frozen target
generator of masked image modeling.

Module and parameter names are those of the official ``modeling_vqkd.py``
(``encoder.*``, ``encode_task_layer.*``, ``quantize.*``), so the released
tokenizer files load key for key; their ``decoder.*`` and
``decode_task_layer.*`` (used only to train a tokenizer) have the same names
in a model that builds them.
"""
import math
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_

from beit3_mm.registry import MODELS
from .norm_ema_quantizer import NormEMAVectorQuantizer

Tensor = torch.Tensor


class Attention(nn.Module):
    """Multi-head self-attention with the official ``q_bias`` / ``v_bias``
    (no key bias) beside a bias-free ``qkv``."""

    def __init__(self, embed_dims: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(embed_dims))
        self.v_bias = nn.Parameter(torch.zeros(embed_dims))
        self.proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, x: Tensor) -> Tensor:
        """(B, N, C) -> (B, N, C)."""
        B, N, C = x.shape
        bias = torch.cat(
            (self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias)
        q, k, v = qkv.reshape(B, N, 3, self.num_heads, -1).permute(
            2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    """fc1 - GELU - fc2."""

    def __init__(self, embed_dims: int, feedforward_channels: int):
        super().__init__()
        self.fc1 = nn.Linear(embed_dims, feedforward_channels)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(feedforward_channels, embed_dims)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block without layer scale (``init_values=0``)."""

    def __init__(self, embed_dims: int, num_heads: int,
                 feedforward_channels: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dims, eps=1e-6)
        self.attn = Attention(embed_dims, num_heads)
        self.norm2 = nn.LayerNorm(embed_dims, eps=1e-6)
        self.mlp = Mlp(embed_dims, feedforward_channels)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Non-overlapping patches by a strided conv ``proj``."""

    def __init__(self, in_channels: int, embed_dims: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(
            in_channels, embed_dims, kernel_size=patch_size,
            stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, H/p * W/p, C)."""
        return self.proj(x).flatten(2).transpose(1, 2)


class VQKDViT(BaseModule):
    """The ViT of the VQ-KD encoder (and decoder): the official
    ``VisionTransformer`` with absolute positions, ``q_bias``/``v_bias``,
    LayerNorm eps 1e-6, no layer scale and the mean-pooling layout, whose
    output is ``fc_norm`` of the patch tokens (``return_patch_tokens``).

    Args:
        arch (str | dict): 'base' or a dict with ``embed_dims``,
            ``num_layers``, ``num_heads``, ``feedforward_channels`` and
            ``patch_size``.
        img_size (int): input side the position table is built for; other
            sides are served by the official bicubic interpolation.
            Defaults to 224.
        in_channels (int): input channels. Defaults to 3.
    """
    arch_zoo = {
        **dict.fromkeys(['b', 'base'], dict(
            embed_dims=768, num_layers=12, num_heads=12,
            feedforward_channels=3072, patch_size=16)),
    }

    def __init__(self,
                 arch: Union[str, dict] = 'base',
                 img_size: int = 224,
                 in_channels: int = 3):
        super().__init__()
        if isinstance(arch, str):
            if arch not in self.arch_zoo:
                raise ValueError(f'unknown VQ-KD arch {arch!r}; choose from '
                                 f'{sorted(self.arch_zoo)} or give a dict')
            arch = self.arch_zoo[arch]
        self.arch_settings = dict(arch)
        D = self.embed_dims = arch['embed_dims']
        self.patch_size = arch['patch_size']
        grid = img_size // self.patch_size
        self.patch_embed = PatchEmbed(in_channels, D, self.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, D))
        self.blocks = nn.ModuleList(
            Block(D, arch['num_heads'], arch['feedforward_channels'])
            for _ in range(arch['num_layers']))
        self.fc_norm = nn.LayerNorm(D, eps=1e-6)

    def init_weights(self) -> None:
        """The official init: truncated normal (std .02) for linear layers,
        the position table and the class token, then ``proj`` and ``fc2``
        of block ``i`` divided by ``sqrt(2 * (i + 1))``."""
        super().init_weights()
        trunc_normal_(self.pos_embed, std=.02)
        trunc_normal_(self.cls_token, std=.02)
        self.apply(_init_linear_and_norm)
        for i, block in enumerate(self.blocks, 1):
            block.attn.proj.weight.data.div_(math.sqrt(2.0 * i))
            block.mlp.fc2.weight.data.div_(math.sqrt(2.0 * i))

    def position_table(self, h: int, w: int) -> Tensor:
        """The table (1, 1 + h * w, C) resized to an (h, w) patch grid as
        the official ``interpolate_pos_encoding`` does."""
        side = math.isqrt(self.pos_embed.shape[1] - 1)
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        patch_pos = F.interpolate(
            patch_pos.reshape(1, side, side, -1).permute(0, 3, 1, 2),
            scale_factor=((h + 0.1) / side, (w + 0.1) / side),
            mode='bicubic')
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, h * w, -1)
        return torch.cat((cls_pos, patch_pos), dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> patch features (B, H/p * W/p, C)."""
        h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        if x.shape[1] != self.pos_embed.shape[1]:
            x = x + self.position_table(h, w)
        else:
            x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.fc_norm(x[:, 1:])


def _init_linear_and_norm(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def _task_layer(embed_dims: int, out_dims: int) -> nn.Sequential:
    """The official task layer: Linear - Tanh - Linear to ``out_dims``."""
    return nn.Sequential(
        nn.Linear(embed_dims, embed_dims), nn.Tanh(),
        nn.Linear(embed_dims, out_dims))


class VQKDEncoderMixin:
    """What :class:`VQKDTokenizer` and
    :class:`~beit3_mm.models.selfsup.VQKDTrainer` share: the official
    ``VQKD`` modules under their names, and the encoding to codes."""

    def _build_vqkd(self,
                    arch: Union[str, dict],
                    img_size: int,
                    num_embed: int,
                    embed_dims: int,
                    beta: float,
                    decay: float,
                    kmeans_init: bool,
                    decoder_depth: Optional[int] = None,
                    decoder_out_dims: Optional[int] = None) -> None:
        """``encoder`` (:class:`VQKDViT`), ``encode_task_layer`` (to
        ``embed_dims``) and ``quantize`` (:class:`NormEMAVectorQuantizer`
        of ``num_embed`` codes); given ``decoder_depth``, also ``decoder``
        (a :class:`VQKDViT` of patch size 1 over the codes) and
        ``decode_task_layer`` (to ``decoder_out_dims``), in the trainer's
        module order."""
        self.encoder = VQKDViT(arch, img_size)
        settings = self.encoder.arch_settings
        D = self.encoder.embed_dims
        if decoder_depth is not None:
            self.decoder = VQKDViT(
                dict(settings, num_layers=decoder_depth, patch_size=1),
                img_size // settings['patch_size'],
                in_channels=embed_dims)
        self.encode_task_layer = _task_layer(D, embed_dims)
        if decoder_depth is not None:
            self.decode_task_layer = _task_layer(D, decoder_out_dims)
        self.quantize = NormEMAVectorQuantizer(num_embed, embed_dims, beta,
                                               decay, kmeans_init)
        self.num_embed = num_embed

    def encode_features(self, images: Tensor) -> Tensor:
        """The quantizer's input (B, h * w, embed_dims) from images
        (B, 3, H, W) in [-1, 1]; the task layer runs in float32, outside
        autocast, as in the official ``encode``."""
        features = self.encoder(images)
        with torch.autocast(device_type=images.device.type, enabled=False):
            return self.encode_task_layer(
                features.type_as(self.encode_task_layer[-1].weight))

    @torch.no_grad()
    def get_codebook_indices(self, images: Tensor) -> Tensor:
        """Codes (B, h * w), int64, of images (B, 3, H, W) in [-1, 1],
        with no side effects (no codebook update, no usage count): the
        official ``VQKD.get_codebook_indices`` after its pre-processing."""
        z = F.normalize(self.encode_features(images), p=2, dim=-1)
        B, N, C = z.shape
        return self.quantize.nearest(z.reshape(B * N, C)).view(B, N)


@MODELS.register_module()
class VQKDTokenizer(VQKDEncoderMixin, BaseModule):
    """BEiT v2's VQ-KD tokenizer: image -> one of ``num_embed`` codes per
    patch, the targets of masked image modeling.

    encoder (:class:`VQKDViT`) -> ``encode_task_layer`` (Linear - Tanh -
    Linear to ``embed_dims``) -> l2 normalisation -> nearest code of the
    l2-normalised codebook (:class:`NormEMAVectorQuantizer`).

    Input: images in [-1, 1], i.e. ``pixel / 127.5 - 1`` (the official
    ``process_type='default'``), a view of its own beside the student's.
    In an mmpretrain pipeline that is the second view of
    ``TwoNormDataPreprocessor`` with ``second_mean=[127.5] * 3`` and
    ``second_std=[127.5] * 3`` (the second crop of
    ``RandomResizedCropAndInterpolationWithTwoPic``), as in mmpretrain's
    BEiT v2 configs; this module is a drop-in ``target_generator`` there
    (``forward`` returns the codes).

    Frozen (the default), it is a fixed target generator whatever the runner
    does: no parameter requires a gradient, ``train()`` leaves it in eval
    mode, and :meth:`get_codebook_indices` neither updates the codebook nor
    counts code usage, so every parameter and buffer stays bit-identical.

    Args:
        arch (str | dict): encoder arch, see :class:`VQKDViT`. Defaults to
            'base' (ViT-B/16, all released tokenizers).
        img_size (int): encoder input size. Defaults to 224.
        num_embed (int): codebook size. Defaults to 8192.
        embed_dims (int): code dimension. Defaults to 32.
        decay (float): EMA decay of the codebook. Defaults to 0.99.
        beta (float): commitment loss weight. Defaults to 1.
        quantize_kmeans_init (bool): empty codebook set by k-means on the
            first training batch (a loaded file sets it); else random unit
            rows. Defaults to True.
        frozen (bool): see above. Defaults to True.
        init_cfg (dict, optional): ``dict(type='Pretrained',
            checkpoint=PATH[, prefix=PREFIX])`` loads a released BEiT v2
            tokenizer file (or mmpretrain's ``VQKD`` layout), strictly, with
            weights-only reading: see
            :func:`~beit3_mm.models.selfsup.load_vqkd_checkpoint`.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'base',
                 img_size: int = 224,
                 num_embed: int = 8192,
                 embed_dims: int = 32,
                 decay: float = 0.99,
                 beta: float = 1.0,
                 quantize_kmeans_init: bool = True,
                 frozen: bool = True,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self._build_vqkd(arch, img_size, num_embed, embed_dims, beta, decay,
                         quantize_kmeans_init)
        self.frozen = frozen
        self._codebook_checked = False
        if frozen:
            self.requires_grad_(False)
            self.eval()

    def train(self, mode: bool = True) -> 'VQKDTokenizer':
        """A frozen tokenizer stays in eval mode."""
        return super().train(mode and not self.frozen)

    def init_weights(self) -> None:
        """Load ``init_cfg.checkpoint`` if given, else the official init."""
        if self.init_cfg and self.init_cfg.get('type') == 'Pretrained':
            from .vqkd_loading import load_vqkd_checkpoint
            load_vqkd_checkpoint(
                self,
                self.init_cfg['checkpoint'],
                prefix=self.init_cfg.get('prefix'),
                logger=MMLogger.get_current_instance())
            self._is_init = True
            return
        super().init_weights()
        self.encode_task_layer.apply(_init_linear_and_norm)

    def get_codebook_indices(self, images: Tensor) -> Tensor:
        """Codes (B, h * w), int64, of images (B, 3, H, W) in [-1, 1]: see
        :meth:`VQKDEncoderMixin.get_codebook_indices`.

        Raises:
            RuntimeError: the codebook was never set (k-means init pending
                and no tokenizer file loaded).
        """
        if not self._codebook_checked:
            self._check_codebook()
        return super().get_codebook_indices(images)

    def _check_codebook(self) -> None:
        """Once, before the first lookup (a host-device sync)."""
        if not self.quantize.embedding.initted.item():
            raise RuntimeError(
                'VQKDTokenizer: the codebook is empty (k-means init pending): '
                "load a tokenizer file with init_cfg=dict(type='Pretrained', "
                'checkpoint=...) or train the tokenizer first')
        self._codebook_checked = True

    def forward(self, images: Tensor) -> Tensor:
        """The codes: :meth:`get_codebook_indices`."""
        return self.get_codebook_indices(images)
