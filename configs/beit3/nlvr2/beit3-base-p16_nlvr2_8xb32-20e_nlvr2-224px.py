# BEiT-3 base NLVR2, the released recipe (83.6 dev / 84.4 test-P): from the
# pretraining file at 224, 8 GPUs x 32, AdamW (0.9, 0.999) lr 7e-4, weight
# decay 0.2, layer decay 0.65, 20 epochs (5 warm-up), drop path 0.2.
# mmpretrain's NLVR2 dataset reads the images of a split from one folder:
# the release spreads train over numbered sub-folders, link them into
# data/nlvr2/train first.
_base_ = [
    'mmpretrain::_base_/datasets/nlvr2.py',
    '../../_base_/schedules/adamw_layer-decay_warmup-cosine_amp.py',
    'mmpretrain::_base_/default_runtime.py',
    '../../_base_/beit3_runtime.py',
]
custom_imports = dict(imports=['beit3_mm'], allow_failed_imports=False)

model = dict(
    type='BEiT3NLVR2',
    backbone=dict(
        type='BEiT3',
        arch='base',
        img_size=224,
        drop_path_rate=0.2,
        output_norm=True),  # the NLVR2 models keep the output norm
    tokenizer=dict(type='BEiT3Tokenizer', name_or_path='data/beit3.spm'),
    max_text_len=64,
    init_cfg=dict(
        type='Pretrained',
        checkpoint='checkpoints/beit3_base_patch16_224.pth'))
data_preprocessor = dict(
    mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], to_rgb=True)

# Official pre-processing of each image of a pair: RandomResizedCrop 0.5-1.0
# + flip in train, a square resize in test (PIL bicubic); raw statements.
train_pipeline = [
    dict(
        type='ApplyToList',
        scatter_key='img_path',
        transforms=[
            dict(type='LoadImageFromFile'),
            dict(
                type='RandomResizedCrop',
                scale=224,
                crop_ratio_range=(0.5, 1.0),
                interpolation='bicubic',
                backend='pillow'),
            dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        ],
        collate_keys=['img', 'scale_factor', 'ori_shape']),
    dict(type='PackInputs', algorithm_keys=['text'], meta_keys=[]),
]
test_pipeline = [
    dict(
        type='ApplyToList',
        scatter_key='img_path',
        transforms=[
            dict(type='LoadImageFromFile'),
            dict(
                type='Resize',
                scale=(224, 224),
                interpolation='bicubic',
                backend='pillow'),
        ],
        collate_keys=['img', 'scale_factor', 'ori_shape']),
    dict(type='PackInputs', algorithm_keys=['text'], meta_keys=[]),
]
# MultiModalDataPreprocessor expects stacked batches: (B, 2, C, H, W).
train_dataloader = dict(
    batch_size=32,
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        ann_file='train.json', data_prefix='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=48,
    collate_fn=dict(type='default_collate'),
    dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=48,
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='NLVR2',
        data_root='data/nlvr2',
        ann_file='test1.json',
        data_prefix='test1',
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_evaluator = dict(type='Accuracy')

optim_wrapper = dict(optimizer=dict(weight_decay=0.2))
param_scheduler = [
    _base_.param_scheduler[0],  # warm-up from 1e-6 at lr 7e-4, 5 epochs
    dict(_base_.param_scheduler[1], end=20),
]
train_cfg = dict(max_epochs=20)

default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(max_keep_ckpts=2, save_best='auto'))
auto_scale_lr = dict(base_batch_size=256)
randomness = dict(seed=42)
