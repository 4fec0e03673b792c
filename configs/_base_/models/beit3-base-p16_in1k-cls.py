# BEiT-3 base as an ImageNet-1k classifier, the released fine-tuning model:
# the vision experts only, the mean of the patch tokens through fc_norm,
# a linear head, drop path 0.15, label smoothing 0.1, mixup 0.8 / cutmix 1.0,
# initialised from the pretraining file.
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
