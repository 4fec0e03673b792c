"""What every BEiT-3 vision-language model shares: the backbone, the text
tokenization and the loading of released files."""
from abc import abstractmethod
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.logging import MMLogger
from mmengine.model import BaseModel

from beit3_mm.registry import MODELS, TOKENIZER
from ..backbones import BEiT3
from ..utils.weight_loading import load_beit3_model

Tensor = torch.Tensor

# mean = std = 127.5 on 0..255 pixels: the official [-1, 1] scaling.
VL_DATA_PREPROCESSOR = dict(
    type='mmpretrain.MultiModalDataPreprocessor',
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    to_rgb=True)


class BEiT3VLModel(BaseModel):
    """Base of the BEiT-3 vision-language models (mmpretrain multimodal API).

    Subclasses add their heads under the official names (``vision_head``,
    ``pooler``, ``head`` ...), so released fine-tuned files converted by
    ``tools/model_converters/beit3_to_mm.py`` load key for key, and
    implement ``extract_feat``, ``loss`` and ``predict``.

    Args:
        backbone (dict): a :class:`~beit3_mm.models.BEiT3` config
            (``out_type`` defaults to 'raw' here: no ``fc_norm``).
        tokenizer (dict, optional): e.g. ``dict(type='BEiT3Tokenizer',
            name_or_path='data/beit3.spm')``. Needed for text inputs.
        max_text_len (int): texts become ``<s> tokens </s>`` plus padding
            to this length, tokens truncated to ``max_text_len - 2``.
            Defaults to 64.
        data_preprocessor (dict, optional): defaults to mmpretrain's
            ``MultiModalDataPreprocessor`` with mean = std = 127.5; a dict
            without ``type`` is taken as that class's arguments.
        init_cfg (dict, optional): ``dict(type='Pretrained',
            checkpoint=PATH)`` loads a released file (pretraining, ITC or
            fine-tuned) or a beit3_mm checkpoint: the backbone and whatever
            heads of this model the file holds (see
            :func:`~beit3_mm.models.utils.load_beit3_model`); the other heads
            keep the official init (truncated normal, std 0.02).
    """

    def __init__(self,
                 backbone: dict,
                 tokenizer: Optional[dict] = None,
                 max_text_len: int = 64,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if data_preprocessor is None:
            data_preprocessor = dict(VL_DATA_PREPROCESSOR)
        elif 'type' not in data_preprocessor:
            # e.g. mmpretrain's coco_vqa.py base gives mean / std only
            data_preprocessor = dict(
                data_preprocessor, type=VL_DATA_PREPROCESSOR['type'])
        # A released file is loaded by init_weights, not by mmengine's
        # PretrainedInit (different key layout, unsafe torch.load).
        self.pretrained = None
        if init_cfg and init_cfg.get('type') == 'Pretrained':
            self.pretrained = init_cfg['checkpoint']
            init_cfg = None
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        # The models read encode()'s tokens: no unused fc_norm by default.
        self.backbone = MODELS.build(dict(dict(out_type='raw'), **backbone))
        if not isinstance(self.backbone, BEiT3):
            raise TypeError(f'{type(self).__name__} needs a BEiT3 backbone, '
                            f'got {type(self.backbone).__name__}')
        if max_text_len < 3:
            raise ValueError(f'max_text_len={max_text_len} leaves no room '
                             f'for a token between <s> and </s>')
        self.max_text_len = max_text_len
        self.tokenizer = TOKENIZER.build(tokenizer) if tokenizer else None
        if self.tokenizer is not None and self.backbone.text_embed is not None:
            rows = self.backbone.text_embed.num_embeddings
            if len(self.tokenizer) > rows:
                raise ValueError(
                    f'the tokenizer has {len(self.tokenizer)} ids, more than '
                    f'the {rows} rows of the text embedding (backbone '
                    f'vocab_size)')

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def tokenize(self, texts: Sequence[str]) -> Tuple[Tensor, Tensor]:
        """Token ids and padding mask of a batch of texts.

        Returns:
            ``text_ids`` (B, max_text_len) and ``padding_mask``
            (B, max_text_len), 1 at padding (the official polarity).
        """
        if self.tokenizer is None:
            raise ValueError(
                f'{type(self).__name__} got texts but has no tokenizer: set '
                f"tokenizer=dict(type='BEiT3Tokenizer', "
                f"name_or_path='data/beit3.spm') in the model config")
        if not texts:
            raise ValueError(f'{type(self).__name__} got an empty list of '
                             f'texts to tokenize')
        enc = self.tokenizer(
            list(texts),
            padding='max_length',
            truncation=True,
            max_length=self.max_text_len,
            return_tensors='pt')
        return (enc['input_ids'].to(self.device),
                (1 - enc['attention_mask']).to(self.device))

    def forward(self,
                images: Optional[Tensor] = None,
                data_samples: Optional[list] = None,
                mode: str = 'tensor') -> Union[Dict[str, Tensor], list]:
        """mmpretrain's entry: ``mode`` is 'tensor', 'loss' or 'predict'."""
        if mode == 'tensor':
            return self.extract_feat(images, data_samples)
        if mode == 'loss':
            return self.loss(images, data_samples)
        if mode == 'predict':
            return self.predict(images, data_samples)
        raise RuntimeError(f'invalid mode {mode!r}; expected tensor, loss or '
                           f'predict')

    def init_weights(self) -> None:
        """BEiT init for the backbone, :meth:`init_heads`, then the
        pretrained file if one is configured."""
        super().init_weights()
        self.init_heads()
        if self.pretrained is not None:
            load_beit3_model(self, self.pretrained,
                             logger=MMLogger.get_current_instance())

    def init_heads(self) -> None:
        """Official head init: truncated normal (std 0.02) for the linear
        layers outside the backbone, zero biases, unit LayerNorms."""
        for name, module in self.named_children():
            if name not in ('backbone', 'data_preprocessor'):
                module.apply(BEiT3._init_module)

    @abstractmethod
    def extract_feat(self, images: Optional[Tensor],
                     data_samples: Optional[list]) -> Dict[str, Tensor]:
        """Features for ``mode='tensor'``."""

    @abstractmethod
    def loss(self, images: Tensor, data_samples: list) -> Dict[str, Tensor]:
        """Losses for ``mode='loss'``."""

    @abstractmethod
    def predict(self, images: Tensor, data_samples: list) -> List:
        """Data samples with predictions for ``mode='predict'``."""
