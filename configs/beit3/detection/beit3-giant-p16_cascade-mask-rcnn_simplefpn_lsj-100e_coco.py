# BEiT-3 giant (1408 wide, 40 layers) Cascade Mask R-CNN, ViTDet's ViT-H
# recipe: global layers 9, 19, 29, 39, drop path 0.5, layer decay 0.9.
# Patch 16, not 14: SimpleFPN and mmdet's anchors and RoI extractors work at
# strides 4-64, and a stride-14 map does not give them. A patch-14 giant
# (e.g. pretrained with beit3-giant-p14_pretrain) loads through init_cfg or
# load_from all the same: the backbone resizes its 14 x 14 patch kernel to
# 16 x 16 with FlexiViT's pseudo-inverse (as EVA and ViTDet resize theirs)
# and its position table to the new grid, and logs both.
# FSDP with fp32 weights and fp16 autocast (AmpOptimWrapper, sharded loss
# scaler): mmcv's CUDA RoIAlign has no bf16 kernel. Activation checkpointing
# is the backbone's with_cp (the strategy's is off).
_base_ = [
    './beit3-large-p16_cascade-mask-rcnn_simplefpn_lsj-100e_coco.py',
    '../../_base_/strategies/fsdp_bf16.py',
]

model = dict(
    backbone=dict(
        arch=dict(
            _delete_=True,
            embed_dims=1408,
            num_layers=40,
            num_heads=16,
            feedforward_channels=6144,
            patch_size=16),
        global_attn_indexes=[9, 19, 29, 39],
        drop_path_rate=0.5,
        init_cfg=None),
    neck=dict(backbone_channel=1408, in_channels=[352, 704, 1408, 1408]))
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.9))
strategy = dict(
    model_wrapper=dict(mixed_precision=None), activation_checkpointing=None)
