"""BEiT-3 multiway transformer as an OpenMMLab backbone."""
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_

from beit3_mm.registry import MODELS
from ..layers import (NUM_VISION_EXTRA_ROWS, POS_OFFSET, KVCache, Multiway,
                      MultiwayTransformerLayer, VisionEmbedding)
from ..utils.weight_loading import check_backbone_state, resize_grid_weights

Tensor = torch.Tensor


class MultiwayEncoder(nn.Module):
    """Position tables, layers and the optional output norm.

    Holds the official ``encoder.*`` keys: ``embed_positions.{A,B}``,
    ``layers.{i}`` and ``layer_norm.{A,B}``.
    """

    def __init__(self, embed_dims: int, num_layers: int, num_heads: int,
                 feedforward_channels: int, num_vision_positions: int,
                 num_text_positions: int, drop_path_rate: float,
                 output_norm: bool, with_language: bool, with_cp: bool,
                 layer_cfgs: Sequence[dict]):
        super().__init__()
        self.embed_positions = Multiway(
            nn.Embedding(num_vision_positions, embed_dims),
            nn.Embedding(num_text_positions, embed_dims)
            if with_language else None)
        rates = np.linspace(0, drop_path_rate, num_layers).tolist()
        self.layers = nn.ModuleList(
            MultiwayTransformerLayer(embed_dims, num_heads,
                                     feedforward_channels, rate,
                                     with_language, with_cp, **cfg)
            for rate, cfg in zip(rates, layer_cfgs))
        self.layer_norm = Multiway.pair(
            lambda: nn.LayerNorm(embed_dims, eps=1e-5),
            with_language) if output_norm else None


@MODELS.register_module()
class BEiT3(BaseModule):
    """BEiT-3 backbone (`Image as a Foreign Language
    <https://arxiv.org/abs/2208.10442>`_).

    Parameter names are those of the released checkpoints without their
    ``beit3.`` prefix, so released files map key for key.

    Args:
        arch (str | dict): 'base', 'large', 'giant', or a dict with
            ``embed_dims``, ``num_layers``, ``num_heads``,
            ``feedforward_channels`` and ``patch_size``.
        img_size (int | tuple): the input size the vision position table is
            built for. Defaults to 224.
        in_channels (int): image channels. Defaults to 3.
        vocab_size (int): rows of the text embedding. Defaults to 64010.
        num_text_positions (int): rows of the text position table (the
            first two are unused). Defaults to 1024.
        drop_path_rate (float): stochastic depth of the last layer; layer
            ``d`` uses ``linspace(0, rate, L)[d]``. Defaults to 0.
        output_norm (bool): apply the final multiway LayerNorm
            (``encoder.layer_norm``), the official ``normalize_output``.
            Defaults to False.
        with_language (bool): build the text embedding and the language
            experts. Image-only tasks set False: the language half is then
            neither allocated nor loaded. Defaults to True.
        with_cp (bool): activation checkpointing per layer. Defaults to
            False.
        train_mask_token (bool): make ``vision_embed.mask_token`` trainable.
            Only masked image modeling (``encode(image_mask=...)``) uses
            it; the other tasks keep it frozen, so that no trainable
            parameter goes without a gradient (DDP fails on one) while
            released files still load key for key. Defaults to False.
        frozen_stages (int): freeze the embeddings (>= 0) and the first
            ``frozen_stages`` layers; -1 freezes nothing.
        out_indices (int | Sequence[int]): layers whose image tokens
            :meth:`forward` returns. Defaults to -1.
        layer_cfgs (dict | Sequence[dict]): more arguments of the layers
            (:class:`~beit3_mm.models.layers.MultiwayTransformerLayer`:
            ``window_size``, ``rel_pos_size``), one dict for all layers or
            one per layer. Defaults to ``dict()``.
        out_type (str): 'cls_token', 'avg_featmap' (mean of the patch tokens
            then ``fc_norm``, as the released classifier), 'featmap'
            (B, D, h, w) or 'raw' (B, 1 + h * w, D). Defaults to
            'avg_featmap'.
        init_cfg (dict, optional): ``dict(type='Pretrained',
            checkpoint=PATH)`` loads any released BEiT-3 file (see
            :func:`beit3_mm.models.utils.load_beit3_checkpoint`).
    """
    arch_zoo = {
        **dict.fromkeys(['b', 'base'], dict(
            embed_dims=768, num_layers=12, num_heads=12,
            feedforward_channels=3072, patch_size=16)),
        **dict.fromkeys(['l', 'large'], dict(
            embed_dims=1024, num_layers=24, num_heads=16,
            feedforward_channels=4096, patch_size=16)),
        **dict.fromkeys(['g', 'giant'], dict(
            embed_dims=1408, num_layers=40, num_heads=16,
            feedforward_channels=6144, patch_size=14)),
    }
    OUT_TYPES = ('cls_token', 'avg_featmap', 'featmap', 'raw')

    def __init__(self,
                 arch: Union[str, dict] = 'base',
                 img_size: Union[int, Tuple[int, int]] = 224,
                 in_channels: int = 3,
                 vocab_size: int = 64010,
                 num_text_positions: int = 1024,
                 drop_path_rate: float = 0.,
                 output_norm: bool = False,
                 with_language: bool = True,
                 with_cp: bool = False,
                 train_mask_token: bool = False,
                 frozen_stages: int = -1,
                 out_indices: Union[int, Sequence[int]] = -1,
                 layer_cfgs: Union[dict, Sequence[dict]] = dict(),
                 out_type: str = 'avg_featmap',
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = self._parse_arch(arch)
        D = self.arch_settings['embed_dims']
        L = self.num_layers = self.arch_settings['num_layers']
        self.embed_dims = D
        self.patch_size = self.arch_settings['patch_size']
        self.img_size = self._pair(img_size, 'img_size')
        for side in self.img_size:
            if side % self.patch_size:
                raise ValueError(
                    f'img_size={self.img_size} is not divisible by the patch '
                    f'size {self.patch_size}')
        self.patch_resolution = tuple(s // self.patch_size
                                      for s in self.img_size)
        if out_type not in self.OUT_TYPES:
            raise ValueError(f'out_type={out_type!r} is not one of '
                             f'{self.OUT_TYPES}')
        self.out_type = out_type
        out_indices = [out_indices] if isinstance(out_indices,
                                                  int) else out_indices
        self.out_indices = [i % L if -L <= i < L else i for i in out_indices]
        bad = [i for i in self.out_indices if not 0 <= i < L]
        if bad:
            raise ValueError(f'out_indices {bad} out of range for {L} layers')
        self.with_language = with_language
        self.output_norm = output_norm
        self.frozen_stages = frozen_stages

        if isinstance(layer_cfgs, dict):
            layer_cfgs = [layer_cfgs] * L
        if len(layer_cfgs) != L:
            raise ValueError(f'layer_cfgs has {len(layer_cfgs)} entries for '
                             f'{L} layers')

        num_patches = self.patch_resolution[0] * self.patch_resolution[1]
        self.text_embed = (nn.Embedding(vocab_size, D)
                           if with_language else None)
        self.vision_embed = VisionEmbedding(D, self.patch_size, in_channels)
        self.train_mask_token = train_mask_token
        self.vision_embed.mask_token.requires_grad_(train_mask_token)
        self.encoder = MultiwayEncoder(
            embed_dims=D,
            num_layers=L,
            num_heads=self.arch_settings['num_heads'],
            feedforward_channels=self.arch_settings['feedforward_channels'],
            num_vision_positions=num_patches + NUM_VISION_EXTRA_ROWS,
            num_text_positions=num_text_positions,
            drop_path_rate=drop_path_rate,
            output_norm=output_norm,
            with_language=with_language,
            with_cp=with_cp,
            layer_cfgs=layer_cfgs)
        self.fc_norm = (nn.LayerNorm(D, eps=1e-5)
                        if out_type == 'avg_featmap' else None)
        self._freeze_stages()
        # One path for weights of another resolution or patch size, whatever
        # the entry: fit the position tables and patch kernel, then (mmengine
        # loads non-strictly) refuse weights that are not ours.
        self.register_load_state_dict_pre_hook(resize_grid_weights)
        self.register_load_state_dict_pre_hook(check_backbone_state)

    # ------------------------------------------------------------------ build
    @classmethod
    def _parse_arch(cls, arch: Union[str, dict]) -> dict:
        keys = {'embed_dims', 'num_layers', 'num_heads',
                'feedforward_channels', 'patch_size'}
        if isinstance(arch, str):
            if arch.lower() not in cls.arch_zoo:
                raise ValueError(f'arch={arch!r} is not one of '
                                 f'{sorted(set(cls.arch_zoo))}')
            return dict(cls.arch_zoo[arch.lower()])
        if not isinstance(arch, dict) or set(arch) != keys:
            raise ValueError(f'a custom arch must be a dict with exactly the '
                             f'keys {sorted(keys)}, got {arch!r}')
        return dict(arch)

    @staticmethod
    def _pair(value: Union[int, Sequence[int]], name: str) -> Tuple[int, int]:
        if isinstance(value, int):
            return value, value
        if len(value) != 2:
            raise ValueError(f'{name} must be an int or a pair, got {value}')
        return int(value[0]), int(value[1])

    def init_weights(self) -> None:
        """Load ``init_cfg.checkpoint`` if given, else the BEiT init."""
        if self.init_cfg and self.init_cfg.get('type') == 'Pretrained':
            from ..utils.weight_loading import load_beit3_checkpoint
            load_beit3_checkpoint(
                self, self.init_cfg['checkpoint'],
                logger=MMLogger.get_current_instance())
            self._is_init = True
            return
        super().init_weights()
        if self.init_cfg is None:
            self.apply(self._init_module)
            trunc_normal_(self.vision_embed.cls_token, std=.02)
            trunc_normal_(self.vision_embed.mask_token, std=.02)

    @staticmethod
    def _init_module(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            trunc_normal_(m.weight, std=.02)
            if getattr(m, 'bias', None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        frozen = [self.vision_embed, self.encoder.embed_positions]
        if self.text_embed is not None:
            frozen.append(self.text_embed)
        frozen += list(self.encoder.layers[:self.frozen_stages])
        if self.frozen_stages >= self.num_layers:
            frozen += [self.encoder.layer_norm, self.fc_norm]
        for m in frozen:
            if m is None:
                continue
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True) -> 'BEiT3':
        super().train(mode)
        self._freeze_stages()
        return self

    # ---------------------------------------------------------------- forward
    def _check_images(self, images: Tensor) -> None:
        if images.dim() != 4 or tuple(images.shape[-2:]) != self.img_size:
            raise ValueError(
                f'{type(self).__name__} was built for img_size='
                f'{self.img_size} and got images of shape '
                f'{tuple(images.shape)}; build it with the input size '
                f'(released position tables are resized on loading)')

    def _vision_pos_table(self, grid: Tuple[int, int]) -> Tensor:
        """The vision position table for a patch grid: (3 + h * w, D)."""
        return self.encoder.embed_positions.A.weight

    def _vision_tokens(self, images: Tensor,
                       image_mask: Optional[Tensor]) -> Tuple[Tensor, tuple]:
        """Patch embedding plus positions: (B, 1 + h * w, D), (h, w)."""
        self._check_images(images)
        x, grid = self.vision_embed(images, image_mask)
        table = self._vision_pos_table(grid)
        return x + table[POS_OFFSET:POS_OFFSET + x.shape[1]], grid

    def _text_tokens(self,
                     text_ids: Tensor,
                     padding_mask: Optional[Tensor],
                     positions: Optional[Tensor] = None) -> Tensor:
        """Token plus position embeddings, zero at padding: (B, M, D).

        ``positions`` ((M,) or (B, M) text indices, row ``2 + index``)
        defaults to ``0..M-1``.
        """
        if self.text_embed is None:
            raise ValueError('this BEiT3 was built with with_language=False '
                             'and cannot encode text')
        table = self.encoder.embed_positions.B.weight
        last = (text_ids.shape[1] if positions is None else
                int(positions.max()) + 1)
        if last + POS_OFFSET > table.shape[0]:
            raise ValueError(
                f'text position {last - 1} exceeds the '
                f'{table.shape[0] - POS_OFFSET} text positions')
        x = self.text_embed(text_ids)
        if positions is None:
            x = x + table[POS_OFFSET:POS_OFFSET + x.shape[1]]
        else:
            x = x + table[POS_OFFSET + positions]
        if padding_mask is not None:
            x = x * (1 - padding_mask.unsqueeze(-1).type_as(x))
        return x

    @staticmethod
    def _attention_mask(num_vision: int, text_padding_mask: Optional[Tensor],
                        attn_mask: Optional[Tensor]) -> Optional[Tensor]:
        """Official masks (True/1 = blocked) -> SDPA's bool keep-mask.

        Returns None (full attention) or a tensor broadcastable to
        (B, H, T, T).
        """
        keep = None
        if text_padding_mask is not None:
            pad = text_padding_mask.bool()
            if num_vision:
                pad = torch.cat((pad.new_zeros(pad.shape[0], num_vision), pad),
                                dim=1)
            keep = ~pad[:, None, None, :]
        if attn_mask is not None:
            allowed = ~attn_mask.bool()[None, None]
            keep = allowed if keep is None else keep & allowed
        return keep

    @staticmethod
    def seq2seq_mask(num_vision: int, num_text: int,
                     device: Optional[torch.device] = None) -> Tensor:
        """The official captioning (UniLM seq2seq) mask, True = blocked.

        Image tokens attend to the image tokens only; text tokens attend to
        all image tokens and to the text up to and including themselves.

        Returns:
            (T, T) bool, T = num_vision + num_text; ``attn_mask`` of
            :meth:`encode`.
        """
        idx = torch.arange(num_vision + num_text, device=device)
        row, col = idx[:, None], idx[None, :]
        return torch.where(row < num_vision, col >= num_vision, col > row)

    def _run_layers(self,
                    x_v: Optional[Tensor],
                    x_t: Optional[Tensor],
                    mask: Optional[Tensor],
                    grid: Optional[Tuple[int, int]] = None,
                    out_indices: Sequence[int] = (),
                    cache: Optional[KVCache] = None
                    ) -> Tuple[Tuple[Optional[Tensor], Optional[Tensor]],
                               Dict[int, Optional[Tensor]]]:
        """Run all layers; collect the image stream after ``out_indices``.
        """
        outs = {}
        last = self.num_layers - 1
        for i, layer in enumerate(self.encoder.layers):
            kv = None if cache is None else cache.layers[i]
            x_v, x_t = layer(x_v, x_t, mask, grid, kv)
            if i == last and self.output_norm:
                x_v, x_t = self.encoder.layer_norm(x_v, x_t)
            if i in out_indices:
                outs[i] = x_v
        return (x_v, x_t), outs

    def encode(self,
               images: Optional[Tensor] = None,
               text_ids: Optional[Tensor] = None,
               text_padding_mask: Optional[Tensor] = None,
               attn_mask: Optional[Tensor] = None,
               image_mask: Optional[Tensor] = None,
               cache: Optional[KVCache] = None,
               text_positions: Optional[Tensor] = None) -> Tensor:
        """Hidden states of the last layer for image, text or both.

        Incremental decoding: pass a :class:`~beit3_mm.models.layers.KVCache`
        (``KVCache(backbone.num_layers)``). The first call (empty cache)
        takes the images (and text, e.g. ``[<s>, <mask>]``) and stores the
        keys and values of every layer; each later call takes text only,
        which attends to everything cached plus the new text up to and
        including itself, and is cached in turn. With a cache, attention
        always follows this seq2seq rule (image tokens see image tokens
        only, see :meth:`seq2seq_mask`), so ``attn_mask`` and
        ``text_padding_mask`` must be None. Text positions continue those
        cached (``cache.num_text + 0..M-1``) unless ``text_positions`` says
        otherwise. Use ``cache.reorder(index)`` to expand or reorder the
        batch (beams) and ``cache.drop_last(n)`` to forget slots whose
        outputs have been read. Without a cache nothing changes::

            cache = KVCache(backbone.num_layers)
            x = backbone.encode(images, bos_and_mask_ids, cache=cache)
            cache.drop_last(1)                       # the <mask> slot
            x = backbone.encode(text_ids=next_and_mask_ids, cache=cache)

        Args:
            images: (B, C, H, W), H and W equal to ``img_size``.
            text_ids: (B, M) token ids.
            text_padding_mask: (B, M), 1/True at padding.
            attn_mask: (T, T), 1/True where attention is blocked
                (T = 1 + h * w + M with an image, else M).
            image_mask: (B, h * w), True for patches replaced by the mask
                token.
            cache: keys and values of the tokens encoded so far, extended
                by this call.
            text_positions: (M,) or (B, M) text indices of ``text_ids``
                (position-table row ``2 + index``). Defaults to
                ``0..M-1`` after the cached text.

        Returns:
            (B, T, D): image tokens (CLS first) then text tokens, after the
            output norm when ``output_norm=True``; with a cache, those of
            this call only.
        """
        if images is None and text_ids is None:
            raise ValueError('encode() needs images, text_ids or both')
        if (image_mask is not None and self.training
                and not self.train_mask_token):
            raise ValueError(
                'encode(image_mask=...) in training needs a BEiT3 built with '
                'train_mask_token=True; the mask token is frozen otherwise')
        if cache is not None:
            attn_mask = self._cached_mask(cache, images, text_ids,
                                          text_padding_mask, attn_mask)
            if text_positions is None and text_ids is not None:
                text_positions = cache.num_text + torch.arange(
                    text_ids.shape[1], device=text_ids.device)
        x_v = x_t = grid = None
        if images is not None:
            x_v, grid = self._vision_tokens(images, image_mask)
        if text_ids is not None:
            x_t = self._text_tokens(text_ids, text_padding_mask,
                                    text_positions)
        num_vision = 0 if x_v is None else x_v.shape[1]
        mask = self._attention_mask(num_vision, text_padding_mask, attn_mask)
        if cache is not None:
            cache.num_vision += num_vision
        (x_v, x_t), _ = self._run_layers(x_v, x_t, mask, grid, cache=cache)
        if x_v is None or x_t is None:
            return x_t if x_v is None else x_v
        return torch.cat((x_v, x_t), dim=1)

    def _cached_mask(self, cache: KVCache, images: Optional[Tensor],
                     text_ids: Optional[Tensor],
                     text_padding_mask: Optional[Tensor],
                     attn_mask: Optional[Tensor]) -> Tensor:
        """The seq2seq mask of the new tokens over cached + new keys:
        (N + M, T + N + M), True = blocked."""
        if attn_mask is not None or text_padding_mask is not None:
            raise ValueError('encode(cache=...) follows the seq2seq rule: '
                             'pass no attn_mask and no text_padding_mask')
        if images is not None and len(cache):
            raise ValueError('encode(cache=...) takes images on the first '
                             'call only (the cache is not empty)')
        new_vision = 0 if images is None else 1 + \
            self.patch_resolution[0] * self.patch_resolution[1]
        new_text = 0 if text_ids is None else text_ids.shape[1]
        device = (images if images is not None else text_ids).device
        mask = self.seq2seq_mask(cache.num_vision + new_vision,
                                 cache.num_text + new_text, device)
        return mask[-(new_vision + new_text):]

    def forward(self, images: Tensor) -> Tuple[Tensor, ...]:
        """Image features in the mmpretrain convention, one per out index."""
        x_v, grid = self._vision_tokens(images, None)
        _, outs = self._run_layers(x_v, None, None, grid, self.out_indices)
        return tuple(self._format_output(outs[i], grid)
                     for i in self.out_indices)

    def _format_output(self, x: Tensor, grid: Tuple[int, int]) -> Tensor:
        if self.out_type == 'raw':
            return x
        if self.out_type == 'cls_token':
            return x[:, 0]
        patches = x[:, 1:]
        if self.out_type == 'featmap':
            # contiguous NCHW: mmcv's RoIAlign (CPU and CUDA) reads the raw
            # buffer as NCHW and scrambles a transposed (channels-last) map
            B, _, D = patches.shape
            return patches.transpose(1, 2).reshape(B, D, *grid).contiguous()
        return self.fc_norm(patches.mean(dim=1))

    # ------------------------------------------------------ layer-wise decay
    def get_layer_depth(self, param_name: str,
                        prefix: str = '') -> Tuple[int, int]:
        """Depth of a parameter for layer-wise lr decay (official rule).

        Names containing ``embed`` are depth 0, ``encoder.layers.i`` is
        ``i + 1``, everything else (output norm, ``fc_norm``, heads) is
        ``L + 1``.

        Returns:
            (depth, L + 2), as mmpretrain's layer-decay constructor expects.
        """
        num_depths = self.num_layers + 2
        if not param_name.startswith(prefix):
            return num_depths - 1, num_depths
        name = param_name[len(prefix):]
        if 'embed' in name:
            return 0, num_depths
        if name.startswith('encoder.layers.'):
            return int(name.split('.')[2]) + 1, num_depths
        return num_depths - 1, num_depths
