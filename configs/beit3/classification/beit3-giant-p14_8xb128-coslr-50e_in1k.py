# BEiT-3 giant ImageNet-1k fine-tuning (patch 14 at 224: 16 x 16 patches)
# from a giant pretrained with beit3-mm (no released weights; init_cfg=None
# for scratch). The large recipe with lr 1e-4, layer decay 0.9, drop path
# 0.3 (our starting point, not a released recipe) under DeepSpeed ZeRO-2
# with bf16: the vision half (1.0B) keeps its bf16 weights on every GPU, the
# fp32 master weights, gradients and AdamW states are sharded.
_base_ = [
    './beit3-large-p16_8xb128-coslr-50e_in1k.py',
    '../../_base_/strategies/deepspeed_zero2_bf16.py',
]

model = dict(
    backbone=dict(
        arch='giant',
        drop_path_rate=0.3,
        init_cfg=dict(
            checkpoint='checkpoints/beit3-giant-p14_pretrain_mm.pth')),
    head=dict(in_channels=1408))
optim_wrapper = dict(
    optimizer=dict(lr=1e-4), paramwise_cfg=dict(layer_decay_rate=0.9))
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=1e-6 / 1e-4),
    _base_.param_scheduler[1],
]
