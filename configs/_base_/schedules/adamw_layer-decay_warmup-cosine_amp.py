# The schedule of adamw_layer-decay_warmup-cosine.py with fp16 (dynamic loss
# scale) as in the official vision-language runs, and AdamW written out (no
# eps) as the official optimizer: betas (0.9, 0.999), weight decay 0.05.
# Recipes set lr, betas, weight decay and layer decay on top.
_base_ = ['./adamw_layer-decay_warmup-cosine.py']

optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(
        type='AdamW', lr=7e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.65))
