# BEiT-3 base + ViTDet simple pyramid + Cascade Mask R-CNN on COCO, the
# paper's setting (ViTDet recipe): window attention (14) with global layers
# 2, 5, 8, 11, decomposed relative position terms (new, from zero), LSJ at
# 1024, AdamW lr 1e-4 wd 0.1, layer decay 0.7, drop path 0.1,
# Shared4Conv1FC heads and mask head with LN, 2-conv RPN, Soft-NMS.
# Fine-tuning from Objects365-style intermediate weights of the whole
# detector is `load_from=PATH` (the backbone init below is then overwritten).
_base_ = [
    'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py',
    '../../_base_/vitdet_lsj-100e_coco-instance.py',
]

norm_cfg = dict(type='LN2d', eps=1e-6, requires_grad=True)
model = dict(
    data_preprocessor=dict(
        pad_size_divisor=32,
        batch_augments=[
            dict(type='BatchFixedSizePad', size=(1024, 1024), pad_mask=True)
        ]),
    backbone=dict(
        _delete_=True,
        type='BEiT3Dense',
        arch='base',
        pretrain_img_size=224,
        window_size=14,
        global_attn_indexes=[2, 5, 8, 11],
        use_rel_pos=True,
        rel_pos_img_size=1024,
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/beit3_base_patch16_224.pth')),
    neck=dict(
        _delete_=True,
        type='SimpleFPN',
        backbone_channel=768,
        in_channels=[192, 384, 768, 768],
        out_channels=256,
        num_outs=5,
        norm_cfg=norm_cfg),
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=[
            dict(
                type='Shared4Conv1FCBBoxHead',
                conv_out_channels=256,
                norm_cfg=norm_cfg,
                in_channels=256,
                fc_out_channels=1024,
                roi_feat_size=7,
                num_classes=80,
                bbox_coder=dict(
                    type='DeltaXYWHBBoxCoder',
                    target_means=[0., 0., 0., 0.],
                    target_stds=stds),
                reg_class_agnostic=True,
                loss_cls=dict(
                    type='CrossEntropyLoss',
                    use_sigmoid=False,
                    loss_weight=1.0),
                loss_bbox=dict(type='SmoothL1Loss', beta=1.0,
                               loss_weight=1.0))
            for stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1],
                         [0.033, 0.033, 0.067, 0.067])
        ],
        mask_head=dict(norm_cfg=norm_cfg)),
    test_cfg=dict(rcnn=dict(nms=dict(type='soft_nms', iou_threshold=0.5))))
