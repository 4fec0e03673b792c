# BEiT-3 large: global layers 5, 11, 17, 23, drop path 0.4, layer decay 0.8
# (ViTDet's ViT-L recipe), activation checkpointing for 1024 inputs.
_base_ = ['./beit3-base-p16_cascade-mask-rcnn_simplefpn_lsj-100e_coco.py']

model = dict(
    backbone=dict(
        arch='large',
        global_attn_indexes=[5, 11, 17, 23],
        drop_path_rate=0.4,
        with_cp=True,
        init_cfg=dict(checkpoint='checkpoints/beit3_large_patch16_224.pth')),
    neck=dict(backbone_channel=1024, in_channels=[256, 512, 1024, 1024]))
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.8))
