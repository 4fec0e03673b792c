# BEiT-3 giant COCO retrieval at 392 (28 x 28 patches of 14; 384 does not
# divide), from a giant pretrained with beit3-mm (no released weights): the
# large recipe with lr 3e-5, layer decay 0.9 (our starting point) under
# DeepSpeed ZeRO-3 with bf16: weights, gradients and AdamW states sharded,
# which leaves room for the 96 pairs per GPU of the contrastive batch.
# Activation checkpointing is the backbone's with_cp.
_base_ = [
    './beit3-large-p16_retrieval_32xb96-15e_coco-384px.py',
    '../../_base_/strategies/deepspeed_zero3_bf16.py',
]

size = 392
model = dict(
    backbone=dict(arch='giant', img_size=size),
    init_cfg=dict(checkpoint='checkpoints/beit3-giant-p14_pretrain_mm.pth'))
train_pipeline = [dict(t, scale=size) if 'scale' in t else t
                  for t in _base_.beit3_train_pipeline]
test_pipeline = [dict(t, scale=(size, size)) if 'scale' in t else t
                 for t in _base_.beit3_test_pipeline]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))

optim_wrapper = dict(
    optimizer=dict(lr=3e-5), paramwise_cfg=dict(layer_decay_rate=0.9))
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=1e-6 / 3e-5),
    _base_.param_scheduler[1],
]
