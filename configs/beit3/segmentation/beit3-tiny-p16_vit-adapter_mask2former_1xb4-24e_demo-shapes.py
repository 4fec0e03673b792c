# The segmentation demo: a tiny BEiT-3 + ViT-Adapter + Mask2Former trained
# from scratch on generated shapes (64x64, ADE20K layout) on the CPU. Make
# the data with
#   python tools/misc/make_demo_data.py segmentation --out data/demo_seg
# Same model structure as the base config, at a scale that runs anywhere;
# tools/test.py evaluates on the training images.
_base_ = [
    './beit3-base-p16_vit-adapter_mask2former_8xb2-160k_ade20k-512x512.py',
    '../../_base_/models/beit3-tiny-p8_demo.py',
]

classes = ('background', 'circle', 'square', 'triangle')
palette = [[0, 0, 0], [220, 20, 60], [0, 128, 255], [255, 200, 0]]
data_root = 'data/demo_seg/'
crop_size = (64, 64)
width = 64
num_classes = len(classes)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch=dict(_base_.tiny_arch, _delete_=True, patch_size=16),
        pretrain_img_size=64,
        drop_path_rate=0.,
        interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]],
        conv_inplane=16,
        deform_num_heads=4,
        deform_ratio=1.0,
        norm_cfg=dict(type='BN', requires_grad=True),
        init_cfg=None),
    decode_head=dict(
        in_channels=[width] * 4,
        feat_channels=width,
        out_channels=width,
        num_classes=num_classes,
        num_queries=8,
        pixel_decoder=dict(
            encoder=dict(
                num_layers=1,
                layer_cfg=dict(
                    self_attn_cfg=dict(embed_dims=width, num_heads=4),
                    ffn_cfg=dict(
                        embed_dims=width, feedforward_channels=2 * width))),
            positional_encoding=dict(num_feats=width // 2)),
        positional_encoding=dict(num_feats=width // 2),
        transformer_decoder=dict(
            num_layers=3,
            layer_cfg=dict(
                self_attn_cfg=dict(embed_dims=width, num_heads=4),
                cross_attn_cfg=dict(embed_dims=width, num_heads=4),
                ffn_cfg=dict(
                    embed_dims=width, feedforward_channels=2 * width))),
        loss_cls=dict(class_weight=[1.0] * num_classes + [0.1]),
        train_cfg=dict(num_points=256)),
    test_cfg=dict(_delete_=True, mode='whole'))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
demo_dataset = dict(
    type='BaseSegDataset',
    data_root=data_root,
    metainfo=dict(classes=classes, palette=palette),
    img_suffix='.jpg',
    seg_map_suffix='.png',
    reduce_zero_label=True)
train_dataloader = dict(
    _delete_=True,
    batch_size=4,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        demo_dataset,
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    train_dataloader,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        train_dataloader['dataset'],
        data_prefix=dict(
            img_path='images/validation',
            seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
# The test set is the training images.
test_dataloader = dict(
    val_dataloader,
    dataset=dict(
        val_dataloader['dataset'],
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training')))

optim_wrapper = dict(
    optimizer=dict(lr=2e-3),
    paramwise_cfg=dict(layer_decay_rate=0.9),
    clip_grad=dict(max_norm=1.0))
max_epochs = 24
# the recipe's warm-up and poly decay, over 50 iterations and the epochs
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=0.01, end=50),
    dict(
        _base_.param_scheduler[1],
        eta_min=1e-5,
        by_epoch=True,
        begin=0,
        end=max_epochs,
        convert_to_iter_based=True)
]
train_cfg = dict(
    _delete_=True,
    type='EpochBasedTrainLoop',
    max_epochs=max_epochs,
    val_interval=max_epochs)
default_hooks = dict(
    logger=dict(interval=16, log_metric_by_epoch=True),
    checkpoint=dict(
        by_epoch=True, interval=max_epochs, save_best=None,
        max_keep_ckpts=1))
log_processor = dict(by_epoch=True)
randomness = dict(seed=0)
