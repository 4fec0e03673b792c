# BEiT-3 base COCO captioning (Karpathy split), the released recipe (133.6
# CIDEr on the Karpathy test split): from the pretraining file at 480,
# 8 GPUs x 32, AdamW lr 4e-5 (betas 0.9 / 0.999), weight decay 0.05, no
# layer decay, 10 epochs (1 warm-up), drop path 0.1, label smoothing 0.1,
# RandAugment, fp16. Validation on the Karpathy val split keeps the best
# checkpoint by CIDEr; tools/test.py scores the Karpathy test split.
_base_ = [
    '../../_base_/models/beit3-base-p16_caption.py',
    '../../_base_/datasets/coco_caption_480px.py',
    '../../_base_/schedules/adamw_layer-decay_warmup-cosine_amp.py',
    '../../_base_/beit3_vl_runtime.py',
]

optim_wrapper = dict(
    optimizer=dict(lr=4e-5), paramwise_cfg=dict(layer_decay_rate=1.0))
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=1e-6 / 4e-5, end=1),
    dict(_base_.param_scheduler[1], begin=1, end=10),
]
train_cfg = dict(max_epochs=10)
default_hooks = dict(
    checkpoint=dict(save_best='coco-caption/CIDEr', rule='greater'))
auto_scale_lr = dict(base_batch_size=256)
