"""The l2-normalised EMA codebook of BEiT v2's VQ-KD tokenizer.

The official ``norm_ema_quantizer.py`` with its parameter and buffer names
(``cluster_size``, ``embedding.{weight,cluster_size,embed_avg,initted}``), so
that released tokenizer files load key for key. mmpretrain's
``NormEMAVectorQuantizer`` lacks ``embedding.cluster_size`` and
``embedding.embed_avg`` and keeps counting code usage in eval mode; here the
side-effect-free lookup :meth:`NormEMAVectorQuantizer.nearest` is what a
frozen tokenizer uses.
"""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from mmengine.dist import all_reduce, broadcast
from mmengine.logging import print_log
from mmpretrain.models.utils.vector_quantizer import (ema_inplace, kmeans,
                                                      norm_ema_inplace)

Tensor = torch.Tensor


class EmbeddingEMA(nn.Module):
    """The codebook: ``weight`` (num_embed, embed_dims), l2-normalised rows.

    ``cluster_size`` holds the k-means cluster sizes and ``embed_avg`` its
    initial copy of ``weight``; the normalised EMA update uses neither, the
    official files hold both. ``initted`` is 1 once the codebook is set
    (random init, k-means or a loaded file).
    """

    def __init__(self, num_embed: int, embed_dims: int, kmeans_init: bool):
        super().__init__()
        self.num_embed = num_embed
        if kmeans_init:
            weight = torch.zeros(num_embed, embed_dims)
        else:
            weight = F.normalize(torch.randn(num_embed, embed_dims), dim=-1)
        self.register_buffer('initted', torch.Tensor([not kmeans_init]))
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.cluster_size = nn.Parameter(
            torch.zeros(num_embed), requires_grad=False)
        self.embed_avg = nn.Parameter(weight.clone(), requires_grad=False)

    @torch.no_grad()
    def init_embed_(self, data: Tensor) -> None:
        """Cosine k-means (10 iterations) on ``data`` (N, embed_dims), unit
        rows, if the codebook is not set yet. Under DDP rank 0's result is
        broadcast so that all ranks share one codebook."""
        if self.initted:
            return
        print_log('VQ-KD: k-means init of the codebook', logger='current')
        embed, cluster_size = kmeans(
            data, self.num_embed, 10, use_cosine_sim=True)
        broadcast(embed)
        broadcast(cluster_size)
        self.weight.data.copy_(embed)
        self.cluster_size.data.copy_(cluster_size)
        self.initted.data.copy_(torch.Tensor([True]))


class NormEMAVectorQuantizer(nn.Module):
    """Nearest code by cosine, codebook updated by a normalised EMA.

    Args:
        num_embed (int): codebook size. Defaults to 8192.
        embed_dims (int): code dimension. Defaults to 32.
        beta (float): weight of the commitment loss. Defaults to 1.
        decay (float): EMA decay of the codebook and of ``cluster_size``.
            Defaults to 0.99.
        kmeans_init (bool): start from an empty codebook set by k-means on
            the first training batch; else random unit rows. Defaults to
            True.
    """

    def __init__(self,
                 num_embed: int = 8192,
                 embed_dims: int = 32,
                 beta: float = 1.0,
                 decay: float = 0.99,
                 kmeans_init: bool = True):
        super().__init__()
        self.num_embed = num_embed
        self.embed_dims = embed_dims
        self.beta = beta
        self.decay = decay
        self.embedding = EmbeddingEMA(num_embed, embed_dims, kmeans_init)
        # code usage: EMA of the per-code counts
        self.register_buffer('cluster_size', torch.zeros(num_embed))

    def nearest(self, z: Tensor) -> Tensor:
        """Indices (N,) of the nearest codes to unit vectors ``z`` (N, d),
        by the official distance ``|z|^2 + |e|^2 - 2 z.e``; no side
        effects."""
        codebook = self.embedding.weight
        d = z.pow(2).sum(dim=1, keepdim=True) + codebook.pow(2).sum(dim=1) \
            - 2 * torch.einsum('bd,nd->bn', z, codebook)
        return torch.argmin(d, dim=1)

    def forward(self, z: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Quantize ``z`` (B, d, h, w) as the official module does.

        Any mode: k-means init on the first call. Training: EMA updates of
        ``cluster_size`` and the codebook (normalised means of the vectors
        assigned to each code; unused codes keep their row). Eval: only
        ``cluster_size`` is updated.

        Returns:
            tuple: the quantized vectors (B, d, h, w) with a straight-through
            gradient, the commitment loss ``beta * mse`` and the indices
            (B * h * w,).
        """
        z = F.normalize(rearrange(z, 'b c h w -> b h w c'), p=2, dim=-1)
        z_flat = z.reshape(-1, self.embed_dims)
        self.embedding.init_embed_(z_flat)
        indices = self.nearest(z_flat)
        z_q = F.embedding(indices, self.embedding.weight).view(z.shape)
        encodings = F.one_hot(indices, self.num_embed).type(z.dtype)

        with torch.no_grad():
            bins = encodings.sum(0)
            all_reduce(bins)
            ema_inplace(self.cluster_size, bins, self.decay)
            if self.training:
                zero_mask = bins == 0
                embed_sum = z_flat.t() @ encodings
                all_reduce(embed_sum)
                embed_mean = (embed_sum /
                              bins.masked_fill(zero_mask, 1.).unsqueeze(0)).t()
                embed_mean = torch.where(zero_mask[..., None],
                                         self.embedding.weight,
                                         F.normalize(embed_mean, p=2, dim=-1))
                norm_ema_inplace(self.embedding.weight, embed_mean,
                                 self.decay)

        loss = self.beta * F.mse_loss(z_q.detach(), z)
        z_q = z + (z_q - z).detach()
        return rearrange(z_q, 'b h w c -> b c h w'), loss, indices
