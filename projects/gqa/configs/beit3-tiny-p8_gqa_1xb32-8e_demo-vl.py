# The GQA demo: the tiny VQA demo model and recipe on the demo scenes in
# GQA's layout (one answer per question), read by mmpretrain's GQA dataset
# and scored by its GQAAcc, in 8 epochs instead of 15 (about 2 minutes on
# 2 CPU cores). Make the data with
#   python tools/misc/make_demo_data.py vl --out data/demo_vl
#   python projects/gqa/tools/vqa_to_gqa.py data/demo_vl
_base_ = ['../../../configs/beit3/vqa/beit3-tiny-p8_vqa_1xb32-15e_demo-vl.py']

data_root = 'data/demo_vl'
# BEiT3VQA as it is: a GQA answer arrives as one string of weight 1, whose
# soft target is 1 (VQA score of 10 annotators out of num_annotators=10).
model = dict(answer_list=data_root + '/gqa/answer2label.txt')

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='GQA',
        data_root=data_root,
        data_prefix='images',
        ann_file='gqa/train_balanced_questions.json',
        pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(
    dataset=dict(
        train_dataloader['dataset'],
        ann_file='gqa/testdev_balanced_questions.json',
        pipeline=_base_.test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, type='GQAAcc')
test_evaluator = val_evaluator

# warm-up 1 epoch, cosine to 8
param_scheduler = [
    dict(_base_.param_scheduler[0], end=1),
    dict(_base_.param_scheduler[1], begin=1, end=8),
]
train_cfg = dict(max_epochs=8, val_interval=2)
