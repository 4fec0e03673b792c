# BEiT-3 base COCO retrieval (Karpathy split), the released recipe
# (61.4 IR@1 / 79.1 TR@1 on the 5k test set): from the ITC file at 384,
# 16 GPUs x 192, AdamW lr 2e-4, layer decay 0.65, 15 epochs (3 warm-up),
# drop path 0.2.
_base_ = [
    '../../_base_/datasets/coco_retrieval_384px.py',
    '../../_base_/beit3-retrieval_384px.py',
]

train_dataloader = dict(batch_size=192)
optim_wrapper = dict(optimizer=dict(lr=2e-4))
# linear warm-up from 1e-6, then cosine to 1e-6, per iteration
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=1e-6 / 2e-4, end=3),
    dict(_base_.param_scheduler[1], begin=3, end=15),
]
train_cfg = dict(max_epochs=15)
