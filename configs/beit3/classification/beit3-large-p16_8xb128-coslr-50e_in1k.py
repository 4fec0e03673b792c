# BEiT-3 large ImageNet-1k fine-tuning, the released recipe (87.6 top-1):
# lr 2e-4, layer decay 0.8, drop path 0.25, activation checkpointing;
# everything else as for base (the warm-up starts at 1e-6 as there).
_base_ = ['./beit3-base-p16_8xb128-coslr-50e_in1k.py']

model = dict(
    backbone=dict(
        arch='large',
        drop_path_rate=0.25,
        with_cp=True,
        init_cfg=dict(checkpoint='checkpoints/beit3_large_patch16_224.pth')),
    head=dict(in_channels=1024))

optim_wrapper = dict(
    optimizer=dict(lr=2e-4), paramwise_cfg=dict(layer_decay_rate=0.8))
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=1e-6 / 2e-4),
    _base_.param_scheduler[1],
]
