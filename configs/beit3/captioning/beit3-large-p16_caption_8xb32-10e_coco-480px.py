# BEiT-3 large COCO captioning, the released recipe: the base recipe from
# the large pretraining file with lr 8e-6.
_base_ = ['./beit3-base-p16_caption_8xb32-10e_coco-480px.py']

model = dict(
    backbone=dict(arch='large'),
    init_cfg=dict(checkpoint='checkpoints/beit3_large_patch16_224.pth'))

optim_wrapper = dict(optimizer=dict(lr=8e-6))
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=1e-6 / 8e-6),
    _base_.param_scheduler[1],
]
