"""The BEiT-3 image path as a plain backbone for dense prediction."""
from typing import Optional, Sequence, Tuple, Union

import torch
from mmengine.utils import to_2tuple

from beit3_mm.registry import MODELS
from ..layers import resize_vision_pos_table
from .beit3 import BEiT3


@MODELS.register_module()
class BEiT3Dense(BEiT3):
    """BEiT-3 vision experts as a ViTDet-style plain backbone.

    Only the vision half is built (loading a released file skips the
    language half). Any input whose sides divide by the patch size runs: the
    position table stays at the pretraining grid, so released files load as
    they are, and is resized on the fly with the official bicubic formula.
    All layers but ``global_attn_indexes`` attend within non-overlapping
    windows of ``window_size`` patches (grid zero-padded, padded keys
    masked); the CLS token is kept and attends to itself in those layers.
    ``use_rel_pos`` adds ViTDet's decomposed relative position terms to every
    layer (new parameters, at zero at the start: a released file loads as
    before and the model computes what it did without them).

    Args:
        arch (str | dict): see :class:`BEiT3`.
        pretrain_img_size (int | tuple): the size of the position table.
            Defaults to 224.
        window_size (int): window side in patches; 0 for global attention
            everywhere. Defaults to 14.
        global_attn_indexes (Sequence[int], optional): layers with global
            attention. Defaults to every quarter of the depth (base: 2, 5,
            8, 11; large: 5, 11, 17, 23).
        drop_path_rate, with_cp, frozen_stages, init_cfg: see
            :class:`BEiT3`.
        out_indices (int | Sequence[int]): layers whose (B, D, H/P, W/P)
            maps are returned. Defaults to -1.
        use_rel_pos (bool): relative position terms in every layer, over
            the window (window layers) or the whole grid (global layers).
            Defaults to False.
        rel_pos_img_size (int | tuple, optional): the training input size,
            which sizes the global layers' tables as in ViTDet (other
            sizes resize them linearly). Defaults to ``pretrain_img_size``.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'base',
                 pretrain_img_size: Union[int, Tuple[int, int]] = 224,
                 window_size: int = 14,
                 global_attn_indexes: Optional[Sequence[int]] = None,
                 drop_path_rate: float = 0.,
                 with_cp: bool = False,
                 frozen_stages: int = -1,
                 out_indices: Union[int, Sequence[int]] = -1,
                 use_rel_pos: bool = False,
                 rel_pos_img_size: Optional[Union[int, Tuple[int,
                                                            int]]] = None,
                 init_cfg: Optional[dict] = None):
        settings = self._parse_arch(arch)
        L = settings['num_layers']
        if global_attn_indexes is None:
            global_attn_indexes = sorted(
                {max(L * (i + 1) // 4 - 1, 0)
                 for i in range(4)})
        bad = [i for i in global_attn_indexes if not 0 <= i < L]
        if bad:
            raise ValueError(f'global_attn_indexes {bad} out of range for '
                             f'{L} layers')
        global_grid = tuple(s // settings['patch_size'] for s in to_2tuple(
            rel_pos_img_size or pretrain_img_size))
        # per layer: window or global attention, and the grid of its
        # relative position tables (the window, or the training input)
        layer_cfgs = []
        for i in range(L):
            window = 0 if i in global_attn_indexes else window_size
            rel_pos_size = None
            if use_rel_pos:
                rel_pos_size = (window, window) if window else global_grid
            layer_cfgs.append(
                dict(window_size=window, rel_pos_size=rel_pos_size))
        super().__init__(
            arch=arch,
            img_size=pretrain_img_size,
            drop_path_rate=drop_path_rate,
            output_norm=False,
            with_language=False,
            with_cp=with_cp,
            frozen_stages=frozen_stages,
            out_indices=out_indices,
            layer_cfgs=layer_cfgs,
            out_type='featmap',
            init_cfg=init_cfg)
        self.window_size = window_size
        self.global_attn_indexes = sorted(global_attn_indexes)
        self.use_rel_pos = use_rel_pos

    def _check_images(self, images: torch.Tensor) -> None:
        P = self.patch_size
        if images.dim() != 4 or images.shape[-2] % P or images.shape[-1] % P:
            raise ValueError(
                f'{type(self).__name__} needs images whose sides divide by '
                f'the patch size {P}, got shape {tuple(images.shape)}; pad '
                f'them (data_preprocessor pad_size_divisor={P}, or a Pad '
                f'transform)')

    def _vision_pos_table(self, grid: Tuple[int, int]) -> torch.Tensor:
        return resize_vision_pos_table(self.encoder.embed_positions.A.weight,
                                       self.patch_resolution, grid)
