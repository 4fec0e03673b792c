# BEiT-3 base + ViTDet simple pyramid + Cascade Mask R-CNN on COCO, the
# paper's setting (ViTDet recipe): the Mask R-CNN model with three box stages
# (IoU 0.5, 0.6, 0.7; class-agnostic boxes, smooth L1), LSJ at 1024, AdamW
# lr 1e-4 wd 0.1, layer decay 0.7, drop path 0.1. Fine-tuning from
# Objects365-style intermediate weights of the whole detector is
# `load_from=PATH` (the backbone init is then overwritten).
_base_ = [
    '../../_base_/models/beit3-base-p16_simplefpn_mask-rcnn.py',
    '../../_base_/vitdet_lsj-100e_coco-instance.py',
]

model = dict(
    type='CascadeRCNN',
    roi_head=dict(
        type='CascadeRoIHead',
        num_stages=3,
        stage_loss_weights=[1, 0.5, 0.25],
        bbox_head=[
            dict(
                _base_.model.roi_head.bbox_head,
                bbox_coder=dict(
                    _base_.model.roi_head.bbox_head.bbox_coder,
                    target_stds=stds),
                reg_class_agnostic=True,
                loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
            for stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1],
                         [0.033, 0.033, 0.067, 0.067])
        ]),
    train_cfg=dict(rcnn=[
        dict(
            _base_.model.train_cfg.rcnn,
            assigner=dict(
                _base_.model.train_cfg.rcnn.assigner,
                pos_iou_thr=iou,
                neg_iou_thr=iou,
                min_pos_iou=iou,
                match_low_quality=False)) for iou in (0.5, 0.6, 0.7)
    ]))
