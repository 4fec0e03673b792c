# BEiT-3 base + UPerNet on ADE20K, BEiT v2's recipe (upernet_beit_base_12_*
# _slide_160k_ade20k) at mmseg's BEiT crop size 640: the image path of BEiT-3
# as a plain backbone with global attention, mmseg's Feature2Pyramid on layers
# 3, 5, 7 and 11 (strides 4, 8, 16, 32), a 768-wide UPerNet head and an FCN
# auxiliary head; drop path 0.15, AdamW lr 5e-5 with layer decay 0.75, 1500
# warm-up iterations then poly decay, mixed precision, slide inference.
_base_ = [
    'mmseg::_base_/models/upernet_beit.py',
    'mmseg::_base_/datasets/ade20k_640x640.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
    '../../_base_/beit3_runtime.py',
]
custom_imports = dict(imports=['beit3_mm'], allow_failed_imports=False)

crop_size = (640, 640)
num_classes = 150
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='BEiT3Dense',
        arch='base',
        pretrain_img_size=224,
        window_size=0,
        drop_path_rate=0.15,
        out_indices=(3, 5, 7, 11),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/beit3_base_patch16_224.pth')),
    neck=dict(embed_dim=768, rescales=[4, 2, 1, 0.5]),
    decode_head=dict(
        in_channels=[768, 768, 768, 768],
        channels=768,
        num_classes=num_classes),
    auxiliary_head=dict(in_channels=768, num_classes=num_classes),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(426, 426)))

optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    constructor='LayerDecayOptimWrapperConstructor',
    optimizer=dict(
        type='AdamW', lr=5e-5, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=0.75))
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
        end=1500),
    dict(
        type='PolyLR',
        power=1.0,
        eta_min=0.0,
        begin=1500,
        end=160000,
        by_epoch=False)
]

# 8 GPUs x 2 images
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
