"""BEiT-3 for visual reasoning over image pairs (NLVR2)."""
from typing import Dict, List

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.structures import DataSample

from beit3_mm.registry import MODELS
from .base import BEiT3VLModel

Tensor = torch.Tensor


class TwoLayerMLP(nn.Module):
    """LN -> Linear -> LN -> GELU -> Linear with the official keys
    ``norm1``, ``dense1``, ``norm2``, ``dense2``."""

    def __init__(self, in_channels: int, hidden_channels: int,
                 out_channels: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(in_channels, eps=1e-5)
        self.dense1 = nn.Linear(in_channels, hidden_channels)
        self.norm2 = nn.LayerNorm(hidden_channels, eps=1e-5)
        self.act = nn.GELU()
        self.dense2 = nn.Linear(hidden_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.dense2(self.act(self.norm2(self.dense1(self.norm1(x)))))


@MODELS.register_module()
class BEiT3NLVR2(BEiT3VLModel):
    """BEiT-3 NLVR2: is a statement true of a pair of images? (the official
    ``BEiT3ForVisualReasoning``).

    Each (image, statement) pair runs through the fusion encoder; the vision
    CLS token and the text ``<s>`` token of a pair are concatenated (2D),
    the two pairs too (4D), and ``head`` (LN, Linear 4D->2D, LN, GELU,
    Linear 2D->2) gives the logits of (false, true). Cross-entropy loss.

    Args:
        backbone (dict): a ``BEiT3`` config; the released NLVR2 models keep
            the output norm (``output_norm=True``).
        head_init_scale (float): the official head init, truncated normal
            (std 0.02), then both linear layers scaled by this. Defaults to
            0.001.
        **kwargs: see :class:`BEiT3VLModel` (``tokenizer``,
            ``max_text_len``, ``data_preprocessor``, ``init_cfg``).
    """

    def __init__(self,
                 backbone: dict,
                 head_init_scale: float = 0.001,
                 **kwargs):
        super().__init__(backbone=backbone, **kwargs)
        D = self.backbone.embed_dims
        self.head_init_scale = head_init_scale
        self.head = TwoLayerMLP(4 * D, 2 * D, 2)

    def init_heads(self) -> None:
        """Truncated normal (std 0.02), then ``dense1`` / ``dense2`` scaled
        by ``head_init_scale``, as the official code."""
        super().init_heads()
        with torch.no_grad():
            for layer in (self.head.dense1, self.head.dense2):
                layer.weight.mul_(self.head_init_scale)
                layer.bias.mul_(self.head_init_scale)

    def forward_logits(self, images: Tensor, text_ids: Tensor,
                       padding_mask: Tensor) -> Tensor:
        """Logits (B, 2) of (false, true).

        Args:
            images: (B, 2, C, H, W) image pairs, as mmpretrain's ``NLVR2``
                data arrives.
            text_ids: (B, M) the tokenized statements.
            padding_mask: (B, M), 1 at padding.
        """
        if images.dim() != 5 or images.shape[1] != 2:
            raise ValueError(f'BEiT3NLVR2 expects images of shape '
                             f'(B, 2, C, H, W), got {tuple(images.shape)}')
        B = images.shape[0]
        # All first images, then all second images (the official batching).
        x = self.backbone.encode(
            images=images.transpose(0, 1).flatten(0, 1),
            text_ids=text_ids.repeat(2, 1),
            text_padding_mask=padding_mask.repeat(2, 1))
        split = x.shape[1] - text_ids.shape[1]  # the text's <s>
        pair = torch.cat((x[:, 0], x[:, split]), dim=-1)
        return self.head(torch.cat(pair.split(B), dim=-1))

    def extract_feat(self, images: Tensor,
                     data_samples: List[DataSample]) -> Dict[str, Tensor]:
        """``logits`` (B, 2) of the samples' statements (``text``) about
        the image pairs."""
        if images is None or not data_samples or len(data_samples) != len(
                images):
            raise ValueError('BEiT3NLVR2 needs image pairs and one data '
                             'sample with a "text" per pair')
        text_ids, padding_mask = self.tokenize(
            [sample.get('text') for sample in data_samples])
        return dict(
            logits=self.forward_logits(images, text_ids, padding_mask))

    @staticmethod
    def _labels(data_samples: List[DataSample]) -> Tensor:
        if any('gt_label' not in s for s in data_samples):
            raise KeyError('BEiT3NLVR2.loss needs gt_label in the data '
                           'samples (1 = true, 0 = false)')
        return torch.cat([s.gt_label for s in data_samples])

    def loss(self, images: Tensor,
             data_samples: List[DataSample]) -> Dict[str, Tensor]:
        """Cross-entropy over (false, true)."""
        logits = self.extract_feat(images, data_samples)['logits']
        labels = self._labels(data_samples).to(logits.device)
        return dict(loss=F.cross_entropy(logits, labels))

    def predict(self, images: Tensor,
                data_samples: List[DataSample]) -> List[DataSample]:
        """Set ``pred_score`` (softmax over false, true) and ``pred_label``,
        what mmpretrain's ``Accuracy`` reads."""
        logits = self.extract_feat(images, data_samples)['logits']
        scores = logits.float().softmax(dim=-1)
        for sample, score in zip(data_samples, scores):
            sample.set_pred_score(score).set_pred_label(score.argmax())
        return data_samples
