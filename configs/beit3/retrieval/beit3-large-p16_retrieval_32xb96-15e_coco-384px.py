# BEiT-3 large COCO retrieval, the released recipe: from the large ITC
# file at 384, 32 GPUs x 96, AdamW lr 5e-5, layer decay 0.85, 15 epochs
# (3 warm-up), drop path 0.2.
_base_ = ['./beit3-base-p16_retrieval_16xb192-15e_coco-384px.py']

model = dict(
    backbone=dict(arch='large'),
    init_cfg=dict(
        checkpoint='checkpoints/beit3_large_itc_patch16_224.pth'))
train_dataloader = dict(batch_size=96)

optim_wrapper = dict(
    optimizer=dict(lr=5e-5), paramwise_cfg=dict(layer_decay_rate=0.85))
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=1e-6 / 5e-5),
    _base_.param_scheduler[1],
]
