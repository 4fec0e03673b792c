# BEiT-3 base on GQA (balanced): the released VQAv2 recipe of beit3-mm
# (480 px from the pretraining file, 8 GPUs x 16, AdamW lr 3e-5, head at lr
# x20, 10 epochs with 1 warm-up, drop path 0.1, RandAugment, soft-score BCE)
# with an answer head over GQA's training answers. The paper reports no GQA
# result; this recipe is untuned. One change: no horizontal flip, since
# GQA's relation questions ask "left" or "right" and a flip would not swap
# the answers. Data (LAVIS's annotation files, which mmpretrain's GQA
# dataset reads, and the images of the official release):
#   data/gqa/images/*.jpg
#   data/gqa/annotations/{train,testdev}_balanced_questions.json
#   python projects/gqa/tools/build_gqa_answer_list.py \
#       data/gqa/annotations/train_balanced_questions.json \
#       --out data/gqa/annotations/answer2label.txt
# Validation and test score GQAAcc (a fraction) on test-dev.
_base_ = [
    '../../../configs/beit3/vqa/beit3-base-p16_vqa_8xb16-10e_vqav2-480px.py'
]

data_root = 'data/gqa'
# A GQA answer arrives as one string of weight 1: its soft target is 1
# (10 annotators of num_annotators=10).
model = dict(answer_list=data_root + '/annotations/answer2label.txt')

# the VQAv2 training pipeline without RandomFlip
train_pipeline = [t for t in _base_.train_pipeline if t.type != 'RandomFlip']
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='GQA',
        data_root=data_root,
        data_prefix='images',
        ann_file='annotations/train_balanced_questions.json',
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        train_dataloader['dataset'],
        ann_file='annotations/testdev_balanced_questions.json',
        pipeline=_base_.test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, type='GQAAcc')
test_evaluator = val_evaluator
