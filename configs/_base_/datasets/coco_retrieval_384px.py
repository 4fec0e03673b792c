# COCO retrieval (Karpathy split; the 5k test file for test) on mmpretrain's
# coco_retrieval.py base with the official retrieval pre-processing at 384:
# raw captions (no lower-casing or punctuation stripping, unlike
# mmpretrain's CleanCaption), PIL bicubic, no RandAugment, mean = std =
# 127.5. The recipes run mmpretrain's retrieval loops.
_base_ = ['mmpretrain::_base_/datasets/coco_retrieval.py']

data_preprocessor = dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5])

beit3_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=384,
        crop_ratio_range=(0.5, 1.0),
        interpolation='bicubic',
        backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='PackInputs',
        algorithm_keys=['text', 'is_matched'],
        meta_keys=['image_id']),
]
beit3_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='Resize',
        scale=(384, 384),
        interpolation='bicubic',
        backend='pillow'),
    dict(
        type='PackInputs',
        algorithm_keys=['text', 'gt_text_id', 'gt_image_id'],
        meta_keys=['image_id']),
]
# Batches are stacked tensors: MultiModalDataPreprocessor reads a list of
# images as (B, T, C, H, W) sequences.
train_dataloader = dict(
    collate_fn=dict(type='default_collate'),
    dataset=dict(pipeline=beit3_train_pipeline))
val_dataloader = dict(
    collate_fn=dict(type='default_collate'),
    dataset=dict(pipeline=beit3_test_pipeline))
test_dataloader = dict(
    val_dataloader,
    dataset=dict(
        val_dataloader['dataset'],
        ann_file='annotations/caption_karpathy_test2014.json'))
