# BEiT-3 base + ViTDet simple pyramid + Mask R-CNN (ViTDet's head settings)
# on mmdet's Mask R-CNN base: window attention (14) with global layers 2, 5,
# 8, 11, decomposed relative position terms (new, from zero), drop path 0.1,
# batches padded to 1024, a 2-conv RPN, Shared4Conv1FC box head and mask head
# with LN, Soft-NMS. The RPN trains as in mmdet's Cascade R-CNN base (no
# anchors across the border, smooth L1, 2000 proposals per image).
# Listed with ../vitdet_lsj-100e_coco-instance.py, which imports beit3_mm.
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py']

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
    rpn_head=dict(
        num_convs=2,
        loss_bbox=dict(type='SmoothL1Loss', beta=1.0 / 9.0, loss_weight=1.0)),
    roi_head=dict(
        bbox_head=dict(
            type='Shared4Conv1FCBBoxHead',
            conv_out_channels=256,
            norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)),
    train_cfg=dict(
        rpn=dict(allowed_border=0),
        rpn_proposal=dict(max_per_img=2000)),
    test_cfg=dict(rcnn=dict(nms=dict(type='soft_nms', iou_threshold=0.5))))
