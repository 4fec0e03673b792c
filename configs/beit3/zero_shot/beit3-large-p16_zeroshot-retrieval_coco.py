# Zero-shot COCO retrieval (test split) with the released large ITC
# file as it is: the dual encoder at 224, no fine-tuning. Test only.
_base_ = [
    '../retrieval/beit3-large-p16_retrieval_32xb96-15e_coco-384px.py'
]

model = dict(backbone=dict(img_size=224, drop_path_rate=0., with_cp=False))

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='Resize',
        scale=(224, 224),
        interpolation='bicubic',
        backend='pillow'),
    dict(
        type='PackInputs',
        algorithm_keys=['text', 'gt_text_id', 'gt_image_id'],
        meta_keys=['image_id']),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))

train_dataloader = None
train_cfg = None
optim_wrapper = None
param_scheduler = None
auto_scale_lr = None
val_dataloader = None
val_cfg = None
val_evaluator = None
