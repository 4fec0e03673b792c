# BEiT-3 large Flickr30k retrieval, the released recipe: from the large ITC
# file at 384, 32 GPUs x 96, AdamW lr 5e-5, layer decay 0.85, 20 epochs
# (5 warm-up), drop path 0.2.
_base_ = ['./beit3-base-p16_retrieval_16xb192-20e_flickr30k-384px.py']

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
