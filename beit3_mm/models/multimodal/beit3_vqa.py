"""BEiT-3 for visual question answering (VQAv2)."""
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.structures import DataSample

from beit3_mm.datasets.vqa_answers import load_answer_list, vqa_soft_score
from beit3_mm.registry import MODELS
from .base import BEiT3VLModel

Tensor = torch.Tensor


class Pooler(nn.Module):
    """Vision CLS token -> LayerNorm -> Linear -> tanh (official keys
    ``pooler.norm.*``, ``pooler.dense.*``)."""

    def __init__(self, embed_dims: int):
        super().__init__()
        self.norm = nn.LayerNorm(embed_dims, eps=1e-5)
        self.dense = nn.Linear(embed_dims, embed_dims)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, D) tokens -> (B, D)."""
        return torch.tanh(self.dense(self.norm(x[:, 0])))


@MODELS.register_module()
class BEiT3VQA(BEiT3VLModel):
    """BEiT-3 VQA: image and question through the fusion encoder, the
    pooled vision CLS token, then a classifier over an answer vocabulary
    (the official ``BEiT3ForVisualQuestionAnswering``).

    Training targets are the official soft scores: an answer given by ``n``
    annotators scores ``(0, 0.3, 0.6, 0.9, 1)[min(n, 4)]``, answers outside
    the vocabulary are dropped (matched without normalisation, as the
    official code does), and the loss is the mean binary cross-entropy times
    the number of answers. mmpretrain's ``COCOVQA`` gives each distinct
    answer's share of the annotators (``gt_answer_weight``); ``n`` is that
    share times ``num_annotators``.

    Args:
        backbone (dict): a ``BEiT3`` config; the released VQA models have no
            output norm (``output_norm=False``).
        answer_list (str): the answer vocabulary file, in the order of the
            head's outputs: the official ``answer2label.txt`` (what
            ``tools/misc/build_vqa_answer_list.py`` writes), a JSON list or
            one answer per line.
        num_annotators (int): answers per question in the annotations (10
            in VQAv2). Defaults to 10.
        **kwargs: see :class:`BEiT3VLModel` (``tokenizer``,
            ``max_text_len``, ``data_preprocessor``, ``init_cfg``).
    """

    def __init__(self,
                 backbone: dict,
                 answer_list: str,
                 num_annotators: int = 10,
                 **kwargs):
        super().__init__(backbone=backbone, **kwargs)
        self.answer_list = load_answer_list(answer_list)
        self.answer_to_label = {a: i for i, a in enumerate(self.answer_list)}
        self.num_annotators = num_annotators
        D = self.backbone.embed_dims
        self.pooler = Pooler(D)
        # Official layout: keys head.0, head.1 and head.3.
        self.head = nn.Sequential(
            nn.Linear(D, 2 * D), nn.LayerNorm(2 * D, eps=1e-5), nn.GELU(),
            nn.Linear(2 * D, len(self.answer_list)))

    def forward_logits(self, images: Tensor, text_ids: Tensor,
                       padding_mask: Tensor) -> Tensor:
        """Answer logits (B, num_answers) of tokenized questions (B, M)
        about ``images`` (B, C, H, W); ``padding_mask`` is 1 at padding."""
        x = self.backbone.encode(
            images=images, text_ids=text_ids, text_padding_mask=padding_mask)
        return self.head(self.pooler(x))

    def extract_feat(self, images: Tensor,
                     data_samples: List[DataSample]) -> Dict[str, Tensor]:
        """``logits`` (B, num_answers) of the samples' ``question``."""
        if images is None or not data_samples:
            raise ValueError('BEiT3VQA needs images and data samples with a '
                             '"question"')
        text_ids, padding_mask = self.tokenize(
            [sample.get('question') for sample in data_samples])
        return dict(
            logits=self.forward_logits(images, text_ids, padding_mask))

    def soft_targets(self, data_samples: List[DataSample]) -> Tensor:
        """Official VQA targets: (B, num_answers) soft scores."""
        targets = torch.zeros(len(data_samples), len(self.answer_list))
        for i, sample in enumerate(data_samples):
            answers = sample.get('gt_answer')
            if answers is None:
                raise KeyError('BEiT3VQA.loss needs "gt_answer" (and '
                               '"gt_answer_weight") in the data samples: add '
                               'them to PackInputs.algorithm_keys')
            if isinstance(answers, str):
                answers = [answers]
            weights = sample.get('gt_answer_weight',
                                 [1. / len(answers)] * len(answers))
            for answer, weight in zip(answers, weights):
                label = self.answer_to_label.get(answer)
                if label is not None:
                    targets[i, label] = vqa_soft_score(
                        round(float(weight) * self.num_annotators))
        return targets.to(self.device)

    def loss(self, images: Tensor,
             data_samples: List[DataSample]) -> Dict[str, Tensor]:
        """Official loss: ``BCEWithLogits(mean) * num_answers``."""
        logits = self.extract_feat(images, data_samples)['logits']
        targets = self.soft_targets(data_samples)
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets)
        return dict(loss=loss * targets.shape[1])

    def predict(self, images: Tensor,
                data_samples: List[DataSample]) -> List[DataSample]:
        """Set ``pred_answer`` (the top answer, for mmpretrain's ``VQAAcc``
        and ``ReportVQA``) and ``pred_answer_score`` (its sigmoid score)."""
        logits = self.extract_feat(images, data_samples)['logits']
        scores, labels = logits.float().sigmoid().max(dim=-1)
        for sample, score, label in zip(data_samples, scores, labels):
            sample.pred_answer = self.answer_list[label]
            sample.pred_answer_score = float(score)
        return data_samples
