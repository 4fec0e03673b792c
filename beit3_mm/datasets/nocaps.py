"""NoCaps (val and test) as one sample per image."""
from collections import defaultdict
from typing import List

import mmengine
from mmengine.fileio import get_file_backend
from mmpretrain.datasets import NoCaps

from beit3_mm.registry import DATASETS


@DATASETS.register_module()
class NoCapsImages(NoCaps):
    """NoCaps with one sample per image.

    mmpretrain's :class:`NoCaps` yields one sample per caption, so inference
    would run ten times per image. Each sample here has ``image_id``,
    ``img_path``, ``domain`` (in-domain, near-domain or out-domain) and
    ``gt_caption``: the image's captions (val, e.g.
    ``nocaps_val_4500_captions.json``) or None (test,
    ``nocaps_test_image_info.json``). Arguments as :class:`NoCaps`.
    """

    def load_data_list(self) -> List[dict]:
        """Load one data info per image of ``ann_file``."""
        img_prefix = self.data_prefix['img_path']
        ann = mmengine.load(self.ann_file)
        captions = defaultdict(list)
        for caption in ann.get('annotations', []):
            captions[caption['image_id']].append(caption['caption'])
        file_backend = get_file_backend(img_prefix)
        return [
            dict(
                image_id=img['id'],
                img_path=file_backend.join_path(img_prefix, img['file_name']),
                domain=img.get('domain'),
                gt_caption=captions.get(img['id']))
            for img in ann['images']
        ]
