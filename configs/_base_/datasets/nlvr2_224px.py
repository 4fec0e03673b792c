# NLVR2 on mmpretrain's nlvr2.py base (train on train, validate on dev, test
# on test1; the images of a split in one folder: the release spreads train
# over numbered sub-folders, link them into data/nlvr2/train first) with the
# official pre-processing of each image of a pair at 224: RandomResizedCrop
# 0.5-1.0 + flip in train, a square resize in test (PIL bicubic); raw
# statements (no CleanCaption), mean = std = 127.5.
_base_ = ['mmpretrain::_base_/datasets/nlvr2.py']

data_preprocessor = dict(
    mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], to_rgb=True)

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
        train_pipeline[0],
        transforms=[
            dict(type='LoadImageFromFile'),
            dict(
                type='Resize',
                scale=(224, 224),
                interpolation='bicubic',
                backend='pillow'),
        ]),
    train_pipeline[-1],
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
    val_dataloader,
    dataset=dict(
        val_dataloader['dataset'], ann_file='test1.json',
        data_prefix='test1'))
