# BEiT-3 large VQAv2, the released recipe (81.85 test-dev): the base recipe
# with lr 2e-5, drop path 0.15 and activation checkpointing.
_base_ = ['./beit3-base-p16_vqa_8xb16-10e_vqav2-480px.py']

model = dict(
    backbone=dict(arch='large', drop_path_rate=0.15, with_cp=True),
    init_cfg=dict(checkpoint='checkpoints/beit3_large_patch16_224.pth'))

optim_wrapper = dict(optimizer=dict(lr=2e-5))
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=1e-6 / 2e-5),
    _base_.param_scheduler[1],
]
