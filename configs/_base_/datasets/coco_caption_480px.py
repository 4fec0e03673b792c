# COCO captioning, Karpathy split, as mmpretrain's COCOCaption reads it (the
# LAVIS files coco_karpathy_{train,val,test}.json, train = train + restval,
# one sample per caption; tools/dataset_converters/coco_karpathy.py writes
# them and the ground truths from dataset_coco.json), with the official
# pre-processing of BEiT-3 captioning at 480, which is that of VQAv2: the
# pipelines of vqav2_480px.py (raw captions, PIL bicubic, RandomResizedCrop
# 0.5-1.0 + flip + RandomAugment(2, 7) in train, a square resize in test,
# mean = std = 127.5) with captions packed instead of questions. Val and
# test are scored offline by CaptionMetric (BLEU, METEOR, ROUGE-L, CIDEr).
_base_ = ['./vqav2_480px.py']

train_pipeline = [
    dict(t, algorithm_keys=['gt_caption'], meta_keys=['image_id'])
    if t.type == 'PackInputs' else t for t in _base_.train_pipeline
]
test_pipeline = [
    dict(type='PackInputs', meta_keys=['image_id'])
    if t.type == 'PackInputs' else t for t in _base_.test_pipeline
]
train_dataloader = dict(
    batch_size=32,
    dataset=dict(
        _delete_=True,
        type='COCOCaption',
        data_root='data/coco',
        ann_file='annotations/coco_karpathy_train.json',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16,
    dataset=dict(
        train_dataloader['dataset'],
        ann_file='annotations/coco_karpathy_val.json',
        pipeline=test_pipeline))
test_dataloader = dict(
    val_dataloader,
    dataset=dict(
        val_dataloader['dataset'],
        ann_file='annotations/coco_karpathy_test.json'))
val_evaluator = dict(
    _delete_=True,
    type='CaptionMetric',
    ann_file='data/coco/annotations/coco_karpathy_val_gt.json')
test_evaluator = dict(
    _delete_=True,
    type='CaptionMetric',
    ann_file='data/coco/annotations/coco_karpathy_test_gt.json')
