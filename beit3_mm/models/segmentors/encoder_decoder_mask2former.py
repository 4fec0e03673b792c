"""mmseg's EncoderDecoder made to work with Mask2Former in slide inference."""
from typing import List

import torch
from mmseg.models.segmentors import EncoderDecoder

from beit3_mm.registry import MODELS


@MODELS.register_module()
class EncoderDecoderMask2Former(EncoderDecoder):
    """:class:`mmseg.models.EncoderDecoder` for Mask2Former heads.

    mmseg 1.2.2's ``Mask2FormerHead.predict`` resizes its masks to the
    ``pad_shape`` of the first image, and ``slide_inference`` updates each
    crop's ``img_shape`` but not its ``pad_shape``: every crop's logits then
    come out at the size of the whole image and cannot be pasted back
    (open-mmlab/mmsegmentation#3752). Here ``pad_shape`` is the shape of
    what is decoded, the padded batch or one crop, which is also what the
    whole-image path needs when images of a batch differ in size.
    """

    def encode_decode(self, inputs: torch.Tensor,
                      batch_img_metas: List[dict]) -> torch.Tensor:
        """(B, C, H, W) -> (B, num_classes, H, W) logits."""
        shape = tuple(inputs.shape[-2:])
        return super().encode_decode(
            inputs, [dict(meta, pad_shape=shape) for meta in batch_img_metas])
