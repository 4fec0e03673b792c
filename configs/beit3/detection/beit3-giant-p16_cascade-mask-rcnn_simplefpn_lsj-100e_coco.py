# BEiT-3 giant (1408 wide, 40 layers) Cascade Mask R-CNN, ViTDet's ViT-H
# recipe: global layers 9, 19, 29, 39, drop path 0.5, layer decay 0.9.
# Patch 16, not 14: SimpleFPN and mmdet's anchors and RoI extractors work at
# strides 4-64, and a stride-14 map does not give them (EVA resizes its
# patch kernel the same way). A patch-14 giant checkpoint therefore does not
# fit vision_embed.proj (the loader stops naming it): from scratch here, or
# from a patch-16 giant via init_cfg.
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
