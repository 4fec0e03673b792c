# Zero-shot ImageNet-1k classification with the released base ITC file:
# each class name in the 80 OpenAI ImageNet prompt templates through the
# language encoder (embeddings averaged per class), images through the
# vision encoder at 224, cosine similarity. Test only.
_base_ = [
    '../../_base_/models/beit3-base-p16_multimodal.py',
    'mmpretrain::_base_/default_runtime.py',
    '../../_base_/beit3_runtime.py',
]

model = dict(
    type='BEiT3ZeroShotClassifier',
    backbone=dict(img_size=224, output_norm=True),
    classes='imagenet',  # mmpretrain's simple ImageNet class names
    prompts='openai_imagenet',  # or a list such as ['a photo of a {}.']
    init_cfg=dict(checkpoint='checkpoints/beit3_base_itc_patch16_224.pth'))

data_preprocessor = dict(
    type='mmpretrain.MultiModalDataPreprocessor',
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    to_rgb=True)
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='Resize',
        scale=(224, 224),
        interpolation='bicubic',
        backend='pillow'),
    dict(type='PackInputs'),
]
test_dataloader = dict(
    batch_size=64,
    num_workers=8,
    collate_fn=dict(type='default_collate'),  # a stacked (B, C, H, W) batch
    dataset=dict(
        type='ImageNet',
        data_root='data/imagenet',
        split='val',
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_evaluator = dict(type='Accuracy', topk=(1, 5))

train_dataloader = None
train_cfg = None
val_dataloader = None
val_cfg = None
test_cfg = dict()
