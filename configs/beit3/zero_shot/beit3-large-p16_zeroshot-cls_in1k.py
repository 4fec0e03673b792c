# Zero-shot ImageNet-1k classification with the released large ITC file.
_base_ = ['./beit3-base-p16_zeroshot-cls_in1k.py']

model = dict(
    backbone=dict(arch='large'),
    init_cfg=dict(
        checkpoint='checkpoints/beit3_large_itc_patch16_224.pth'))
