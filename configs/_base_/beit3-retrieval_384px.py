# What the BEiT-3 retrieval recipes share on top of mmpretrain's retrieval
# dataset bases (coco_retrieval.py / flickr30k_retrieval.py): the dual
# encoder initialised from the ITC file at 384 (the 224 position table is
# resized on loading), the official pre-processing, AdamW with layer decay,
# fp16 and activation checkpointing as in the official runs, and
# mmpretrain's retrieval loops. Leaves set the dataset, lr and epochs.
_base_ = ['mmpretrain::_base_/default_runtime.py', './beit3_runtime.py']
custom_imports = dict(imports=['beit3_mm'], allow_failed_imports=False)

model = dict(
    type='BEiT3Retrieval',
    backbone=dict(
        type='BEiT3',
        arch='base',
        img_size=384,
        drop_path_rate=0.2,
        output_norm=True,
        with_cp=True),
    tokenizer=dict(type='BEiT3Tokenizer', name_or_path='data/beit3.spm'),
    max_text_len=64,
    init_cfg=dict(
        type='Pretrained',
        checkpoint='checkpoints/beit3_base_itc_patch16_224.pth'))

# Official pre-processing: raw captions (no lower-casing or punctuation
# stripping, unlike mmpretrain's CleanCaption), PIL bicubic, no RandAugment.
# The leaves put these pipelines into their dataloaders and set the
# data_preprocessor to mean = std = 127.5.
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

# AdamW (0.9, 0.999), weight decay 0.05 except biases, norms, the CLS token,
# the vision position table and logit_scale; the logged lr is the head's.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(
        type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.65))

train_cfg = dict(by_epoch=True, max_epochs=15, val_interval=1)
val_cfg = dict(type='RetrievalValLoop')
test_cfg = dict(type='RetrievalTestLoop')

# keep the best text-to-image recall@1 (IR@1, the first number reported)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(
        max_keep_ckpts=2, save_best='t2i/retrieval/Recall@1',
        rule='greater'))
randomness = dict(seed=42)
