# BEiT-3 base ImageNet-1k fine-tuning, the released recipe (85.4 top-1):
# 8 GPUs x 128, AdamW lr 7e-4, layer decay 0.65, 50 epochs (5 warm-up),
# drop path 0.15, mixup 0.8 / cutmix 1.0, label smoothing 0.1, RandAugment,
# random erasing 0.25, bicubic, eval crop ratio 1.0.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
    '../../_base_/beit3_runtime.py',
]
custom_imports = dict(imports=['beit3_mm'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='BEiT3',
        arch='base',
        img_size=224,
        drop_path_rate=0.15,
        with_language=False,  # image classification runs the vision experts
        out_type='avg_featmap',  # mean of the patch tokens -> fc_norm
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/beit3_base_patch16_224.pth')),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        # official: trunc normal std 0.02, then scaled by 0.001
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02 * 0.001)),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]),
)

# eval: shorter side to 224 / 1.0, centre crop 224
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='ResizeEdge',
        scale=224,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    optimizer=dict(lr=7e-4, weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(_delete_=True, layer_decay_rate=0.65))

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-6 / 7e-4,
        by_epoch=True,
        end=5,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-6,
        by_epoch=True,
        begin=5,
        end=50,
        convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=50, val_interval=1)
default_hooks = dict(checkpoint=dict(max_keep_ckpts=2, save_best='auto'))
