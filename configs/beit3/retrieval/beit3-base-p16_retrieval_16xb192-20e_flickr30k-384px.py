# BEiT-3 base Flickr30k retrieval (Karpathy split), the released recipe
# (86.2 IR@1 / 96.3 TR@1 on the 1k test set): from the ITC file at 384,
# 16 GPUs x 192, AdamW lr 1e-4, layer decay 0.65, 20 epochs (5 warm-up),
# drop path 0.2.
_base_ = [
    '../../_base_/datasets/flickr30k_retrieval_384px.py',
    '../../_base_/beit3-retrieval_384px.py',
]

train_dataloader = dict(batch_size=192)
optim_wrapper = dict(optimizer=dict(lr=1e-4))
# linear warm-up from 1e-6, then cosine to 1e-6, per iteration
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=1e-6 / 1e-4, end=5),
    dict(_base_.param_scheduler[1], begin=5, end=20),
]
train_cfg = dict(max_epochs=20)
