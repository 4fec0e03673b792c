# VQAv2 on mmpretrain's coco_vqa.py base (train2014 / val2014, test2015 for
# ReportVQA) with the official pre-processing at 480: raw questions (no
# CleanCaption), PIL bicubic, RandomResizedCrop 0.5-1.0 + flip +
# RandomAugment(2, 7) in train, a square resize in test, mean = std = 127.5.
# The RandomAugment ops as mmpretrain transforms, each applied with
# probability 0.5 at level 7 / 10: enhance factor level / 10 * 1.8 + 0.1,
# shear 0.3, rotation 30 degrees, translation 10 pixels, grey (128) fill.
# For another size, replace the crop / resize scales and the translation
# fraction 10 / size (see the 768 config).
_base_ = ['mmpretrain::_base_/datasets/coco_vqa.py']

# mmpretrain's MultiModalDataPreprocessor (the model's default type)
data_preprocessor = dict(
    mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], to_rgb=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=480,
        crop_ratio_range=(0.5, 1.0),
        interpolation='bicubic',
        backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandAugment',
        num_policies=2,
        magnitude_level=7,
        total_level=10,
        policies=[
            dict(type='Brightness', magnitude=0.),  # 'Identity'
            dict(type='AutoContrast'),
            dict(type='Equalize'),
            dict(
                type='Brightness',
                magnitude_range=(-0.9, 0.9),
                random_negative_prob=0.),
            dict(
                type='Sharpness',
                magnitude_range=(-0.9, 0.9),
                random_negative_prob=0.),
            dict(
                type='Shear',
                magnitude_range=(0, 0.3),
                direction='horizontal',
                interpolation='bilinear'),
            dict(
                type='Shear',
                magnitude_range=(0, 0.3),
                direction='vertical',
                interpolation='bilinear'),
            dict(
                type='Translate',
                magnitude_range=(0, 10 / 480),
                direction='horizontal',
                interpolation='bilinear'),
            dict(
                type='Translate',
                magnitude_range=(0, 10 / 480),
                direction='vertical',
                interpolation='bilinear'),
            dict(
                type='Rotate',
                magnitude_range=(0, 30),
                interpolation='bilinear'),
        ]),
    dict(
        type='PackInputs',
        algorithm_keys=['question', 'gt_answer', 'gt_answer_weight'],
        meta_keys=['question_id', 'image_id']),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='Resize',
        scale=(480, 480),
        interpolation='bicubic',
        backend='pillow'),
    train_pipeline[-1],
]
# MultiModalDataPreprocessor expects stacked batches.
train_dataloader = dict(
    batch_size=16,
    collate_fn=dict(type='default_collate'),
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=24,
    collate_fn=dict(type='default_collate'),
    dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
