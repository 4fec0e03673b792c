# COCO instance segmentation with ViTDet's large-scale jitter at 1024 and its
# 100-epoch schedule (184,375 iterations at batch 64): AdamW, layer-wise lr
# decay over a BEiT-3 backbone, AMP. The data pipeline is mmdet's LSJ base;
# models pad their batches to image_size (BatchFixedSizePad).
_base_ = ['mmdet::common/lsj-100e_coco-instance.py', './beit3_runtime.py']
custom_imports = dict(imports=['beit3_mm'], allow_failed_imports=False)

# 64 images per iteration: 8 GPUs x 8, or 16 x 4 with auto_scale_lr
train_dataloader = dict(batch_size=8, num_workers=8)

optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.7),
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1))

max_iters = 184375
interval = 5000
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=250),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_iters,
        by_epoch=False,
        milestones=[163889, 177546],
        gamma=0.1)
]
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=interval,
    dynamic_intervals=[(max_iters // interval * interval + 1, max_iters)])
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(
        type='CheckpointHook',
        by_epoch=False,
        save_last=True,
        interval=interval,
        max_keep_ckpts=5))
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)
auto_scale_lr = dict(base_batch_size=64)
