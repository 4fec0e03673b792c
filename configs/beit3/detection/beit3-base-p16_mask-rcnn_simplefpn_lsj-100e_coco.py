# BEiT-3 base + simple pyramid + Mask R-CNN on COCO with ViTDet's recipe:
# LSJ at 1024, AdamW lr 1e-4 wd 0.1, layer decay 0.7, 100 epochs.
_base_ = [
    '../../_base_/models/beit3-base-p16_simplefpn_mask-rcnn.py',
    '../../_base_/vitdet_lsj-100e_coco-instance.py',
]
