"""BEiT-3 as a dual encoder: image-text retrieval (COCO, Flickr30k)."""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import get_rank, get_world_size
from mmpretrain.models.multimodal.blip.blip_retrieval import all_gather_concat
from mmpretrain.structures import DataSample

from beit3_mm.registry import MODELS
from .base import BEiT3VLModel

Tensor = torch.Tensor


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` (B, ...) from all processes, rank order, keeping
    the autograd graph: the gradient of every rank's loss flows back to the
    rank that computed each row (the official ``GatherLayer``)."""
    if get_world_size() == 1:
        return x
    return torch.cat(torch.distributed.nn.functional.all_gather(x), dim=0)


def contrastive_loss(image_feat: Tensor, text_feat: Tensor,
                     logit_scale: Tensor) -> Tensor:
    """The official symmetric CLIP loss (``utils.ClipLoss`` of BEiT-3).

    The local rows are scored against the features of every process; pair
    ``i`` of this process is the positive of global index
    ``rank * B + i``.

    Args:
        image_feat: (B, D) L2-normalised image features of this process.
        text_feat: (B, D) L2-normalised features of the paired texts.
        logit_scale: the scale, ``exp(logit_scale)`` of the model.

    Returns:
        The mean of the image-to-text and text-to-image cross-entropies.
    """
    if image_feat.shape != text_feat.shape:
        raise ValueError(f'image features {tuple(image_feat.shape)} and text '
                         f'features {tuple(text_feat.shape)} must pair up')
    all_image = gather_with_grad(image_feat)
    all_text = gather_with_grad(text_feat)
    logits_per_image = logit_scale * image_feat @ all_text.T
    logits_per_text = logit_scale * text_feat @ all_image.T
    labels = torch.arange(
        image_feat.shape[0], device=image_feat.device) + (
            get_rank() * image_feat.shape[0])
    return (F.cross_entropy(logits_per_image, labels) +
            F.cross_entropy(logits_per_text, labels)) / 2


def texts_of(data_samples: Optional[Sequence[DataSample]]) -> List[str]:
    """The texts of a batch: one ``text`` string per sample (training), or a
    list per sample (retrieval evaluation), flattened in order."""
    texts = []
    for sample in data_samples or ():
        text = sample.get('text')
        if text is None:
            continue
        texts.extend([text] if isinstance(text, str) else list(text))
    return texts


@MODELS.register_module()
class BEiT3Retrieval(BEiT3VLModel):
    """BEiT-3 dual encoder for image-text retrieval (official
    ``BEiT3ForRetrieval``).

    An image alone runs the vision experts, a text alone the language
    experts, both through the shared backbone with its output norm; the
    first token (image CLS, text ``<s>``) goes through ``vision_head`` or
    ``language_head`` (Linear D->D, no bias) and is L2-normalised. Training
    uses the symmetric contrastive loss with scale ``exp(logit_scale)``
    over the features of all processes; retrieval scores are the cosine
    similarities.

    With mmpretrain's ``RetrievalValLoop`` / ``RetrievalTestLoop``,
    ``mode='tensor'`` gives the features of a batch and :meth:`predict_all`
    ranks all texts for each image and all images for each text, in the
    form that ``RetrievalRecall`` reads.

    Embeddings for your own use: :meth:`extract_image_embeddings` and
    :meth:`extract_text_embeddings`.

    Args:
        backbone (dict): a :class:`~beit3_mm.models.BEiT3` config with
            ``output_norm=True`` and ``with_language=True``.
        tokenizer (dict, optional): see :class:`BEiT3VLModel`.
        max_text_len (int): see :class:`BEiT3VLModel`. Defaults to 64.
        data_preprocessor (dict, optional): see :class:`BEiT3VLModel`.
        init_cfg (dict, optional): ``dict(type='Pretrained',
            checkpoint=PATH)`` with an ITC or retrieval file loads the heads
            and ``logit_scale`` too; the vision position table is resized to
            ``backbone.img_size``.
    """

    def __init__(self,
                 backbone: dict,
                 tokenizer: Optional[dict] = None,
                 max_text_len: int = 64,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(
            backbone=backbone,
            tokenizer=tokenizer,
            max_text_len=max_text_len,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        if not (self.backbone.with_language and self.backbone.output_norm):
            raise ValueError(
                f'{type(self).__name__} needs backbone.with_language=True '
                f'and backbone.output_norm=True (the released retrieval '
                f'models), got with_language={self.backbone.with_language}, '
                f'output_norm={self.backbone.output_norm}')
        dims = self.backbone.embed_dims
        self.vision_head = nn.Linear(dims, dims, bias=False)
        self.language_head = nn.Linear(dims, dims, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    # ------------------------------------------------------------ embeddings
    def encode_images(self, images: Tensor) -> Tensor:
        """(B, C, H, W) normalised images -> (B, D) unit-norm features."""
        x = self.backbone.encode(images=images)
        return F.normalize(self.vision_head(x[:, 0]), dim=-1)

    def encode_texts(self, text_ids: Tensor, padding_mask: Tensor) -> Tensor:
        """(N, M) token ids and padding mask (1 = pad) -> (N, D) unit-norm
        features."""
        x = self.backbone.encode(
            text_ids=text_ids, text_padding_mask=padding_mask)
        return F.normalize(self.language_head(x[:, 0]), dim=-1)

    @torch.no_grad()
    def extract_image_embeddings(self, images: Tensor) -> Tensor:
        """Normalised image embeddings, ready for cosine similarity.

        Args:
            images: (B, 3, H, W) RGB images of the model's ``img_size``,
                already resized and scaled to [-1, 1] (``x / 127.5 - 1`` on
                0..255 pixels), e.g. by ``model.data_preprocessor``.

        Returns:
            (B, D) unit-norm embeddings.
        """
        return self.encode_images(images.to(self.device))

    @torch.no_grad()
    def extract_text_embeddings(self, texts: Sequence[str]) -> Tensor:
        """Normalised text embeddings of raw strings (tokenized here).

        Returns:
            (N, D) unit-norm embeddings.
        """
        if isinstance(texts, str):
            texts = [texts]
        return self.encode_texts(*self.tokenize(texts))

    # --------------------------------------------------------- mmpretrain API
    def extract_feat(
            self,
            images: Optional[Tensor] = None,
            data_samples: Optional[Sequence[DataSample]] = None
    ) -> Dict[str, Tensor]:
        """Features of a batch (``mode='tensor'``).

        Returns:
            A dict with, for the inputs present,

            - ``image_feat`` (B, D) and ``image_index`` (B, ) (the samples'
              ``image_id``, when they all have one);
            - ``text_feat`` (N, D) for the texts of the samples in order and
              ``text_index`` (N, ) (their ``gt_text_id`` in evaluation).
        """
        texts = texts_of(data_samples)
        if images is None and not texts:
            raise ValueError(f'{type(self).__name__}.extract_feat got neither '
                             f'images nor data samples with text')
        feats = {}
        if images is not None:
            feats['image_feat'] = self.encode_images(images)
            ids = [s.get('image_id') for s in data_samples or ()]
            if ids and None not in ids:
                feats['image_index'] = torch.tensor(ids, device=self.device)
        if texts:
            feats['text_feat'] = self.encode_texts(*self.tokenize(texts))
            ids = [
                i for s in data_samples for i in s.get('gt_text_id', ())
                if not isinstance(s.get('text'), str)
            ]
            if len(ids) == len(texts):
                feats['text_index'] = torch.tensor(ids, device=self.device)
        return feats

    def loss(self, images: Tensor,
             data_samples: Sequence[DataSample]) -> Dict[str, Tensor]:
        """Contrastive loss of a batch of matching (image, text) pairs."""
        texts = texts_of(data_samples)
        if len(texts) != images.shape[0]:
            raise ValueError(
                f'{type(self).__name__}.loss needs one text per image, got '
                f'{len(texts)} texts for {images.shape[0]} images')
        image_feat = self.encode_images(images)
        text_feat = self.encode_texts(*self.tokenize(texts))
        scale = self.logit_scale.exp()
        return dict(
            loss=contrastive_loss(image_feat, text_feat, scale),
            logit_scale=scale.detach())

    def predict(self, images: Tensor,
                data_samples: Sequence[DataSample]) -> Tuple[list, list]:
        """In-batch retrieval: the samples' images against their texts.

        Returns:
            (image-to-text, text-to-image) predictions, see
            :meth:`predict_all`.
        """
        return self.predict_all(
            self.extract_feat(images, data_samples), data_samples)

    @staticmethod
    def _gather(feat: Tensor, index: Optional[Tensor],
                num: Optional[int]) -> Tensor:
        """The features of all processes, row ``i`` for sample index ``i``.

        Without indices the rows keep the process order (the first ``num``).
        With them, padding duplicates of the distributed sampler collapse
        and any sampler order works.
        """
        feat = all_gather_concat(feat)
        if index is None:
            return feat[:num]
        index = all_gather_concat(index)
        num = int(index.max()) + 1 if num is None else num
        if index.min() < 0 or index.max() >= num:
            raise ValueError(f'sample indices span [{int(index.min())}, '
                             f'{int(index.max())}], outside [0, {num})')
        out = feat.new_zeros(num, feat.shape[1])
        out[index] = feat
        seen = torch.zeros(num, dtype=torch.bool, device=feat.device)
        seen[index] = True
        if not seen.all():
            raise ValueError(f'{int((~seen).sum())} of {num} samples have no '
                             f'features: is the evaluation set complete?')
        return out

    def predict_all(self,
                    feats: Dict[str, Tensor],
                    data_samples: Optional[Sequence[DataSample]],
                    num_images: Optional[int] = None,
                    num_texts: Optional[int] = None,
                    cal_i2t: bool = True,
                    cal_t2i: bool = True) -> Tuple[List[DataSample], ...]:
        """Rank every text for the local images and every image for the
        local texts by cosine similarity (the official evaluation).

        Args:
            feats: :meth:`extract_feat` outputs of this process,
                concatenated over batches.
            data_samples: the samples those features come from (None for
                bare queries).
            num_images / num_texts: the sizes of the evaluation set.
            cal_i2t / cal_t2i: which directions to predict.

        Returns:
            The image-to-text predictions (one sample per local image,
            ``pred_score`` over all texts, ``gt_label`` = its
            ``gt_text_id``) and/or the text-to-image ones (one sample per
            local text, ``pred_score`` over all images, ``gt_label`` = its
            ``gt_image_id``), in that order.
        """
        results = []
        if cal_i2t:
            texts = self._gather(feats['text_feat'], feats.get('text_index'),
                                 num_texts)
            scores = feats['image_feat'] @ texts.T
            samples = ([DataSample() for _ in range(len(scores))]
                       if data_samples is None else list(data_samples))
            for sample in samples:
                if 'gt_text_id' in sample:
                    sample.set_gt_label(sample.gt_text_id)
            results.append(self._set_predictions(samples, scores))
        if cal_t2i:
            images = self._gather(feats['image_feat'],
                                  feats.get('image_index'), num_images)
            scores = feats['text_feat'] @ images.T
            samples = []
            for sample in data_samples or [None] * len(scores):
                text = None if sample is None else sample.get('text')
                texts = [text] if isinstance(text, str) else (text or [None])
                for i, one in enumerate(texts):
                    new = DataSample() if one is None else DataSample(text=one)
                    if sample is not None and 'gt_image_id' in sample:
                        new.set_gt_label(sample.gt_image_id[i])
                    samples.append(new)
            results.append(self._set_predictions(samples, scores))
        return tuple(results)

    @staticmethod
    def _set_predictions(samples: List[DataSample],
                         scores: Tensor) -> List[DataSample]:
        if len(samples) != len(scores):
            raise ValueError(f'{len(samples)} data samples for '
                             f'{len(scores)} rows of scores')
        for sample, score in zip(samples, scores):
            sample.set_pred_score(score)
            sample.set_pred_label(score.argmax(keepdim=True))
        return samples
