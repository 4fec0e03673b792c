# BEiT-3 base NLVR2, the released recipe (83.6 dev / 84.4 test-P): from the
# pretraining file at 224, 8 GPUs x 32, AdamW (0.9, 0.999) lr 7e-4, weight
# decay 0.2, layer decay 0.65, 20 epochs (5 warm-up), drop path 0.2.
_base_ = [
    '../../_base_/models/beit3-base-p16_nlvr2.py',
    '../../_base_/datasets/nlvr2_224px.py',
    '../../_base_/schedules/adamw_layer-decay_warmup-cosine_amp.py',
    '../../_base_/beit3_vl_runtime.py',
]

optim_wrapper = dict(optimizer=dict(weight_decay=0.2))
param_scheduler = [
    _base_.param_scheduler[0],  # warm-up from 1e-6 at lr 7e-4, 5 epochs
    dict(_base_.param_scheduler[1], end=20),
]
train_cfg = dict(max_epochs=20)
auto_scale_lr = dict(base_batch_size=256)
