# BEiT-3 base VQAv2, the released recipe (77.65 test-dev): from the
# pretraining file at 480 (the 224 position table is resized on loading),
# 8 GPUs x 16, AdamW (0.9, 0.98) lr 3e-5, weight decay 0.01, no layer decay
# but the head (not the pooler) at lr x20, 10 epochs (1 warm-up), drop path
# 0.1, RandAugment, 3129 answers.
# The official run trains on train2014 + val2014 minus 1000 val images and
# validates on those; this config keeps mmpretrain's layout (train2014 /
# val2014, test2015 for ReportVQA).
_base_ = [
    'mmpretrain::_base_/datasets/coco_vqa.py',
    'mmpretrain::_base_/default_runtime.py',
    '../../_base_/beit3_runtime.py',
]
custom_imports = dict(imports=['beit3_mm'], allow_failed_imports=False)

model = dict(
    type='BEiT3VQA',
    backbone=dict(
        type='BEiT3',
        arch='base',
        img_size=480,
        drop_path_rate=0.1,
        output_norm=False),  # the VQA models have no output norm
    tokenizer=dict(type='BEiT3Tokenizer', name_or_path='data/beit3.spm'),
    max_text_len=64,
    # build it with tools/misc/build_vqa_answer_list.py (official order)
    answer_list='data/coco/annotations/answer2label.txt',
    init_cfg=dict(
        type='Pretrained',
        checkpoint='checkpoints/beit3_base_patch16_224.pth'))
# mmpretrain's MultiModalDataPreprocessor (the model's default type)
data_preprocessor = dict(
    mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], to_rgb=True)

# Official pre-processing: raw questions (no CleanCaption), PIL bicubic,
# RandomResizedCrop 0.5-1.0 + flip + RandomAugment(2, 7) in train, a square
# resize in test. The RandomAugment ops as mmpretrain transforms, each
# applied with probability 0.5 at level 7 / 10: enhance factor
# level / 10 * 1.8 + 0.1, shear 0.3, rotation 30 degrees, translation 10
# pixels, grey (128) fill.
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
    dict(
        type='PackInputs',
        algorithm_keys=['question', 'gt_answer', 'gt_answer_weight'],
        meta_keys=['question_id', 'image_id']),
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
test_dataloader = dict(
    batch_size=24,
    collate_fn=dict(type='default_collate'),
    dataset=dict(pipeline=test_pipeline))

# layer decay 1.0: one lr for the whole model, except the head at x20; no
# weight decay on biases, norms, the CLS token and the vision position table.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(
        type='AdamW', lr=3e-5, betas=(0.9, 0.98), weight_decay=0.01),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=1.0, custom_keys={'head.': dict(lr_mult=20.)}))
# linear warm-up from ~0, then cosine to 1e-6, per iteration
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-6 / 3e-5,
        by_epoch=True,
        end=1,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-6,
        by_epoch=True,
        begin=1,
        end=10,
        convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=10, val_interval=1)
val_cfg = dict()
test_cfg = dict()

default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(max_keep_ckpts=2, save_best='auto'))
auto_scale_lr = dict(base_batch_size=128)
randomness = dict(seed=42)
