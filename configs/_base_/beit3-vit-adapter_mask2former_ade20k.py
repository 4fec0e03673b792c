# What the ViT-Adapter + Mask2Former recipes share, the paper's segmentation
# setting (the authors did not release it): mmseg's Mask2Former ADE20K recipe
# (its only file that holds the Mask2Former model, so its 512 crops, data and
# 160k schedule at batch 16 come along) with ViT-Adapter's BEiT-adapter
# settings: base BEiT-3, deformable attention with 12 heads and value ratio
# 0.5, interaction stages [[0, 2], [3, 5], [6, 8], [9, 11]], drop path 0.2,
# AdamW lr 3e-5 with layer decay 0.9 (adapter and head at the top depth),
# 1500 warm-up iterations then poly decay, slide inference (with our
# EncoderDecoderMask2Former, which fixes mmseg's Mask2Former slide inference).
_base_ = [
    'mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py',
    './beit3_runtime.py',
]
# mmseg's Mask2Former head builds mmdet's modules
custom_imports = dict(
    imports=['mmdet.models', 'beit3_mm'], allow_failed_imports=False)

crop_size = (512, 512)
model = dict(
    type='EncoderDecoderMask2Former',
    backbone=dict(
        _delete_=True,
        type='BEiT3Adapter',
        arch='base',
        pretrain_img_size=224,
        drop_path_rate=0.2,
        interaction_indexes=[[0, 2], [3, 5], [6, 8], [9, 11]],
        conv_inplane=64,
        deform_num_heads=12,
        deform_num_points=4,
        deform_ratio=0.5,
        cffn_ratio=0.25,
        num_extra_extractors=2,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/beit3_base_patch16_224.pth')),
    decode_head=dict(in_channels=[768, 768, 768, 768]),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='LayerDecayOptimWrapperConstructor',
    optimizer=dict(
        type='AdamW', lr=3e-5, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        layer_decay_rate=0.9,
        custom_keys={
            'query_embed': dict(decay_mult=0.),
            'query_feat': dict(decay_mult=0.),
            'level_embed': dict(decay_mult=0.),
        }))
max_iters = 160000
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
        end=1500),
    dict(
        type='PolyLR',
        power=1.0,
        eta_min=0.0,
        begin=1500,
        end=max_iters,
        by_epoch=False)
]
train_cfg = dict(max_iters=max_iters)
