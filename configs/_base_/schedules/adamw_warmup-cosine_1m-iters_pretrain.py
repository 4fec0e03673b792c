# The BEiT-3 pretraining schedule (paper, section 2.3): AdamW betas (0.9,
# 0.98), eps 1e-6, weight decay 0.05 (none on biases, norms, the CLS token
# and the position tables: LayerDecayOptimWrapperConstructor without decay),
# peak lr 1e-3 after 10k linear warm-up iterations, cosine to 0 at 1M
# iterations, fp16 with a dynamic loss scale; iteration-based, no validation.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(
        type='AdamW', lr=1e-3, betas=(0.9, 0.98), eps=1e-6,
        weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=1.0))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-6 / 1e-3,
        by_epoch=False,
        begin=0,
        end=10000),
    dict(
        type='CosineAnnealingLR',
        eta_min=0.,
        by_epoch=False,
        begin=10000,
        end=1000000),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=1000000)
val_cfg = None
test_cfg = None
