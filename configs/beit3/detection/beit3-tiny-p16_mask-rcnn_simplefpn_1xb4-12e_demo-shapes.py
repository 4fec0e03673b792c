# The detection demo: a tiny BEiT-3 Mask R-CNN trained from scratch on
# generated shapes (3 classes, 128x128) on the CPU. Make the data with
#   python tools/misc/make_demo_data.py detection --out data/demo_det
# Same model structure as the base config, at a scale that runs anywhere;
# tools/test.py evaluates on the training images.
_base_ = [
    './beit3-base-p16_mask-rcnn_simplefpn_lsj-100e_coco.py',
    '../../_base_/models/beit3-tiny-p8_demo.py',
]

classes = ('circle', 'square', 'triangle')
data_root = 'data/demo_det/'
width = 64
# The images at their 128 px (an 8 x 8 patch grid): upsampled to 256, the
# same 12 epochs reach about the same mAP at twice the cost of a step.
img_scale = (128, 128)
model = dict(
    data_preprocessor=dict(batch_augments=None),
    backbone=dict(
        arch=dict(_base_.tiny_arch, _delete_=True, patch_size=16),
        pretrain_img_size=img_scale,
        rel_pos_img_size=img_scale,
        window_size=4,
        global_attn_indexes=[1, 3],
        drop_path_rate=0.,
        init_cfg=None),
    neck=dict(
        backbone_channel=width,
        in_channels=[width // 4, width // 2, width, width],
        out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(
            in_channels=width,
            conv_out_channels=width,
            fc_out_channels=256,
            num_classes=len(classes)),
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(
            in_channels=width,
            conv_out_channels=width,
            num_classes=len(classes))),
    # 1-3 objects an image: hundreds of proposals rather than COCO's
    # thousands (the RPN's NMS and the RoI heads take most of the time)
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=100), rcnn=dict(max_per_img=20)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
demo_dataset = dict(
    type='CocoDataset', data_root=data_root, metainfo=dict(classes=classes))
train_dataloader = dict(
    _delete_=True,
    batch_size=4,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        demo_dataset,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True),
        pipeline=train_pipeline))
val_dataloader = dict(
    _delete_=True,
    batch_size=4,
    num_workers=0,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        demo_dataset,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = dict(
    val_dataloader,
    dataset=dict(
        val_dataloader['dataset'],
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/')))
val_evaluator = dict(
    _delete_=True,
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_val.json',
    metric=['bbox', 'segm'])
test_evaluator = dict(
    ann_file=data_root + 'annotations/instances_train.json')

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=0.9),
    clip_grad=dict(max_norm=10.))
max_epochs = 12
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=0.01, end=50),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=0,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(
    _delete_=True,
    type='EpochBasedTrainLoop',
    max_epochs=max_epochs,
    val_interval=4)
default_hooks = dict(
    logger=dict(interval=8, log_metric_by_epoch=True),
    checkpoint=dict(
        by_epoch=True, interval=4, save_last=True, max_keep_ckpts=1))
log_processor = dict(by_epoch=True)
auto_scale_lr = dict(base_batch_size=4)
randomness = dict(seed=0)
