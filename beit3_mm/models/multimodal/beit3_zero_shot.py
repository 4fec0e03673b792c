"""Zero-shot image classification with the BEiT-3 dual encoder."""
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmpretrain.models.multimodal.clip.clip import PROMPT_MAP, PROTOTYPE_MAP
from mmpretrain.structures import DataSample

from beit3_mm.registry import MODELS
from .beit3_retrieval import BEiT3Retrieval

Tensor = torch.Tensor


def build_prompts(prompts: Union[str, Sequence[str]]) -> List[Callable]:
    """Prompt templates as callables ``class name -> text``.

    Args:
        prompts: a key of mmpretrain's CLIP prompt sets (``'vanilla'``,
            ``'openai_imagenet'``, ``'openai_imagenet_sub'``,
            ``'openai_cifar100'``) or format strings with one ``{}``, e.g.
            ``['a photo of a {}.', 'a drawing of a {}.']``.
    """
    if isinstance(prompts, str):
        if prompts not in PROMPT_MAP:
            raise ValueError(f'prompts={prompts!r} is not one of '
                             f'{sorted(PROMPT_MAP)}; or pass a list of '
                             f'templates such as ["a photo of a {{}}."]')
        return list(PROMPT_MAP[prompts])
    prompts = list(prompts)
    bad = [p for p in prompts if not isinstance(p, str) or p.count('{}') != 1]
    if not prompts or bad:
        raise ValueError(f'prompts must be a non-empty list of templates with '
                         f'exactly one "{{}}" each; bad: {bad}')
    return [template.format for template in prompts]


@MODELS.register_module()
class BEiT3ZeroShotClassifier(BEiT3Retrieval):
    """Zero-shot image classification through the BEiT-3 dual encoder.

    Each class name is written into every prompt template; the normalised
    text embeddings of a class are averaged and normalised again (as CLIP
    does), and an image is scored against the classes by cosine similarity
    times ``exp(logit_scale)``. Predictions carry ``pred_score`` (softmax)
    and ``pred_label`` for mmpretrain's ``Accuracy``.

    The class embeddings are computed once per evaluation and cached (the
    cache is dropped by ``train()`` and on loading weights). ``loss`` is the
    cross-entropy of the same logits with class embeddings computed with
    gradients, which fine-tunes both encoders on labelled images.

    Args:
        backbone (dict): see :class:`BEiT3Retrieval`.
        classes (str | Sequence[str]): the class names, or ``'imagenet'`` /
            ``'cifar100'`` for mmpretrain's lists. Defaults to 'imagenet'.
        prompts (str | Sequence[str]): see :func:`build_prompts`. Defaults
            to 'openai_imagenet' (80 templates).
        text_batch_size (int): texts encoded at once for the class
            embeddings. Defaults to 256.
        **kwargs: ``tokenizer``, ``max_text_len``, ``data_preprocessor``
            and ``init_cfg`` of :class:`BEiT3Retrieval`.
    """

    def __init__(self,
                 backbone: dict,
                 classes: Union[str, Sequence[str]] = 'imagenet',
                 prompts: Union[str, Sequence[str]] = 'openai_imagenet',
                 text_batch_size: int = 256,
                 **kwargs):
        super().__init__(backbone=backbone, **kwargs)
        if isinstance(classes, str):
            if classes not in PROTOTYPE_MAP:
                raise ValueError(f'classes={classes!r} is not one of '
                                 f'{sorted(PROTOTYPE_MAP)}; or pass a list '
                                 f'of class names')
            classes = PROTOTYPE_MAP[classes]
        self.classes = [str(c) for c in classes]
        if not self.classes:
            raise ValueError('classes is empty')
        self.prompts = build_prompts(prompts)
        self.text_batch_size = text_batch_size
        self._class_embeds: Optional[Tensor] = None

    def class_embeddings(self) -> Tensor:
        """(num_classes, D) unit-norm class embeddings: the mean of the
        normalised prompt embeddings of each class, normalised."""
        texts = [p(c) for c in self.classes for p in self.prompts]
        feats = torch.cat([
            self.encode_texts(*self.tokenize(texts[i:i +
                                                   self.text_batch_size]))
            for i in range(0, len(texts), self.text_batch_size)
        ])
        feats = feats.view(len(self.classes), len(self.prompts), -1).mean(1)
        return F.normalize(feats, dim=-1)

    def train(self, mode: bool = True) -> 'BEiT3ZeroShotClassifier':
        self._class_embeds = None
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self._class_embeds = None
        super()._load_from_state_dict(*args, **kwargs)

    def logits(self, images: Tensor, class_embeds: Tensor) -> Tensor:
        """(B, num_classes) scaled cosine similarities."""
        return self.logit_scale.exp() * self.encode_images(
            images) @ class_embeds.T

    def loss(self, images: Tensor,
             data_samples: Sequence[DataSample]) -> Dict[str, Tensor]:
        """Cross-entropy of the class logits against ``gt_label``."""
        labels = torch.cat([s.gt_label for s in data_samples]).to(self.device)
        logits = self.logits(images, self.class_embeddings())
        return dict(loss=F.cross_entropy(logits, labels))

    def predict(
            self,
            images: Tensor,
            data_samples: Optional[Sequence[DataSample]] = None
    ) -> List[DataSample]:
        """Class scores (softmax) and labels of a batch of images."""
        if self._class_embeds is None or self.training:
            with torch.no_grad():
                self._class_embeds = self.class_embeddings()
        scores = F.softmax(self.logits(images, self._class_embeds), dim=-1)
        samples = (list(data_samples) if data_samples is not None else
                   [DataSample() for _ in range(len(scores))])
        for sample, score in zip(samples, scores):
            sample.set_pred_score(score).set_pred_label(
                score.argmax(keepdim=True))
        return samples
