"""Attention pooling of a token sequence into one feature vector."""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_

from beit3_mm.registry import MODELS

Tensor = torch.Tensor


@MODELS.register_module()
class AttentionPoolNeck(BaseModule):
    """Pool the tokens of a ViT-style backbone with a learned query.

    A learned query cross-attends over all the tokens (multi-head
    attention, as the attentional pooler of CoCa), followed by a
    LayerNorm: an image classifier then weighs its patches instead of
    averaging them. Registered in mmengine's root registry
    (``beit3_mm.registry.MODELS``), so it builds from the mmpretrain,
    mmdet and mmseg scopes alike.

    Args:
        in_channels (int): D of the tokens.
        num_heads (int): attention heads; must divide ``in_channels``.
            Defaults to 8.
        init_cfg (dict, optional): initialisation; the query is always
            drawn from a truncated normal (std 0.02).
    """

    def __init__(self,
                 in_channels: int,
                 num_heads: int = 8,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if in_channels % num_heads:
            raise ValueError(f'num_heads={num_heads} does not divide '
                             f'in_channels={in_channels}')
        self.query = nn.Parameter(torch.zeros(1, 1, in_channels))
        self.attn = nn.MultiheadAttention(
            in_channels, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(in_channels, eps=1e-6)
        trunc_normal_(self.query, std=.02)

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Each (B, T, D) token sequence of ``inputs`` (a BEiT3 backbone
        with ``out_type='raw'``) -> a (B, D) feature."""
        outs = []
        for tokens in inputs:
            if tokens.dim() != 3:
                raise ValueError(f'AttentionPoolNeck takes (B, T, D) tokens, '
                                 f'got shape {tuple(tokens.shape)}: set '
                                 f"the backbone's out_type='raw'")
            query = self.query.expand(tokens.shape[0], -1, -1)
            pooled, _ = self.attn(query, tokens, tokens, need_weights=False)
            outs.append(self.norm(pooled[:, 0]))
        return tuple(outs)
