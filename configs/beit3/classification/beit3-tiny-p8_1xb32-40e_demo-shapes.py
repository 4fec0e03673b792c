# The embedded demo: a tiny BEiT-3 trained from scratch on generated shape
# images (4 classes, 32x32), on the CPU in a few minutes. Make the data with
#   python tools/misc/make_demo_data.py classification --out data/demo_cls
# It keeps the released recipe's structure (layer decay, AdamW, warm-up +
# cosine) at a scale that runs anywhere.
_base_ = [
    './beit3-base-p16_8xb128-coslr-50e_in1k.py',
    '../../_base_/models/beit3-tiny-p8_demo.py',
]

model = dict(
    backbone=dict(
        arch=dict(_delete_=True, **_base_.tiny_arch),
        img_size=32,
        drop_path_rate=0.,
        init_cfg=None),
    head=dict(
        num_classes=4,
        in_channels=64,
        loss=dict(_delete_=True, type='CrossEntropyLoss'),
        topk=(1, ),
        init_cfg=None),
    train_cfg=dict(_delete_=True))
data_preprocessor = dict(num_classes=4)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [train_pipeline[0], train_pipeline[-1]]
train_dataloader = dict(
    batch_size=32, num_workers=0, persistent_workers=False,
    dataset=dict(
        _delete_=True, type='CustomDataset', data_root='data/demo_cls',
        data_prefix='train', pipeline=train_pipeline))
val_dataloader = dict(train_dataloader, batch_size=64, dataset=dict(
    train_dataloader['dataset'], data_prefix='val', pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(lr=2e-3), paramwise_cfg=dict(layer_decay_rate=0.9))
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=1e-2, end=4),
    dict(_base_.param_scheduler[1], eta_min=1e-5, begin=4, end=40),
]
train_cfg = dict(max_epochs=40, val_interval=10)
default_hooks = dict(logger=dict(interval=4))
auto_scale_lr = dict(base_batch_size=32)
randomness = dict(seed=0)
