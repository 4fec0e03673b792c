# BEiT-3 large + ViT-Adapter + Mask2Former on ADE20K at 896x896: ViT-Adapter's
# BEiT-L / BEiT v2-L recipe (mask2former_beit*_adapter_large_896_80k_ade20k):
# interaction stages [[0, 5], [6, 11], [12, 17], [18, 23]], 16 deformable
# heads, drop path 0.3, a 1024-wide Mask2Former head with 200 queries,
# AdamW lr 2e-5 with layer decay 0.9, 80k iterations, slide inference
# (896 crops, stride 512), activation checkpointing.
_base_ = [
    './beit3-base-p16_vit-adapter_mask2former_8xb2-160k_ade20k-512x512.py'
]

crop_size = (896, 896)
width = 1024
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch='large',
        drop_path_rate=0.3,
        with_cp=True,
        interaction_indexes=[[0, 5], [6, 11], [12, 17], [18, 23]],
        deform_num_heads=16,
        init_cfg=dict(checkpoint='checkpoints/beit3_large_patch16_224.pth')),
    decode_head=dict(
        in_channels=[width] * 4,
        feat_channels=width,
        out_channels=width,
        num_queries=200,
        pixel_decoder=dict(
            encoder=dict(
                layer_cfg=dict(
                    self_attn_cfg=dict(embed_dims=width, num_heads=32),
                    ffn_cfg=dict(
                        embed_dims=width, feedforward_channels=4 * width))),
            positional_encoding=dict(num_feats=width // 2)),
        positional_encoding=dict(num_feats=width // 2),
        transformer_decoder=dict(
            layer_cfg=dict(
                self_attn_cfg=dict(embed_dims=width, num_heads=32),
                cross_attn_cfg=dict(embed_dims=width, num_heads=32),
                ffn_cfg=dict(
                    embed_dims=width, feedforward_channels=4 * width)))),
    test_cfg=dict(crop_size=crop_size, stride=(512, 512)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(
        type='RandomChoiceResize',
        scales=[int(896 * x * 0.1) for x in range(5, 21)],
        resize_type='ResizeShortestEdge',
        max_size=3584),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(3584, 896), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=2e-5))
max_iters = 80000
param_scheduler = [
    _base_.param_scheduler[0],
    dict(_base_.param_scheduler[1], end=max_iters),
]
interval = 8000
train_cfg = dict(max_iters=max_iters, val_interval=interval)
default_hooks = dict(checkpoint=dict(interval=interval))
