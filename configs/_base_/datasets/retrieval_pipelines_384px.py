# The official retrieval pre-processing at 384, for mmpretrain's retrieval
# dataset bases (coco_retrieval.py / flickr30k_retrieval.py): raw captions
# (no lower-casing or punctuation stripping, unlike mmpretrain's
# CleanCaption), PIL bicubic, no RandAugment. The recipes put these pipelines
# into their dataloaders, set the data_preprocessor to mean = std = 127.5
# and run mmpretrain's retrieval loops.
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
