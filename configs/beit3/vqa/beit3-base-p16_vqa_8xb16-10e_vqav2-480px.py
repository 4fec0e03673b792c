# BEiT-3 base VQAv2, the released recipe (77.65 test-dev): from the
# pretraining file at 480 (the 224 position table is resized on loading),
# 8 GPUs x 16, AdamW (0.9, 0.98) lr 3e-5, weight decay 0.01, no layer decay
# but the head (not the pooler) at lr x20, 10 epochs (1 warm-up), drop path
# 0.1, RandAugment, 3129 answers.
# The official run trains on train2014 + val2014 minus 1000 val images and
# validates on those; this config keeps mmpretrain's layout (train2014 /
# val2014, test2015 for ReportVQA).
_base_ = [
    '../../_base_/models/beit3-base-p16_vqa.py',
    '../../_base_/datasets/vqav2_480px.py',
    '../../_base_/schedules/adamw_layer-decay_warmup-cosine_amp.py',
    '../../_base_/beit3_vl_runtime.py',
]

# layer decay 1.0: one lr for the whole model, except the head at x20; no
# weight decay on biases, norms, the CLS token and the vision position table.
optim_wrapper = dict(
    optimizer=dict(lr=3e-5, betas=(0.9, 0.98), weight_decay=0.01),
    paramwise_cfg=dict(
        layer_decay_rate=1.0, custom_keys={'head.': dict(lr_mult=20.)}))
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=1e-6 / 3e-5, end=1),
    dict(_base_.param_scheduler[1], begin=1, end=10),
]
train_cfg = dict(max_epochs=10)
auto_scale_lr = dict(base_batch_size=128)
