# BEiT-3 base ImageNet-1k fine-tuning, the released recipe (85.4 top-1):
# 8 GPUs x 128, AdamW lr 7e-4, layer decay 0.65, 50 epochs (5 warm-up),
# drop path 0.15, mixup 0.8 / cutmix 1.0, label smoothing 0.1, RandAugment,
# random erasing 0.25, bicubic, eval crop ratio 1.0.
_base_ = [
    '../../_base_/models/beit3-base-p16_in1k-cls.py',
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    '../../_base_/schedules/adamw_layer-decay_warmup-cosine.py',
    'mmpretrain::_base_/default_runtime.py',
    '../../_base_/beit3_runtime.py',
]

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

default_hooks = dict(checkpoint=dict(max_keep_ckpts=2, save_best='auto'))
