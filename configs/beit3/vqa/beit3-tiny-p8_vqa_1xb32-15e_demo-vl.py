# The embedded VQA demo: a tiny BEiT-3 trained from scratch on generated
# scenes of coloured shapes with questions about colour, shape, count and
# position, on the CPU in a few minutes. Make the data with
#   python tools/misc/make_demo_data.py vl --out data/demo_vl
# It keeps the recipe's structure (soft-score BCE, head lr x20, AdamW,
# warm-up + cosine) at a scale that runs anywhere. No flip or crop: the
# answers say "left" / "right" and count the shapes.
_base_ = [
    './beit3-base-p16_vqa_8xb16-10e_vqav2-480px.py',
    '../../_base_/models/beit3-tiny-p8_demo.py',
]

data_root = 'data/demo_vl'
model = dict(
    backbone=dict(
        arch=dict(_delete_=True, **_base_.tiny_arch),
        img_size=64,
        vocab_size=128,
        num_text_positions=32,
        drop_path_rate=0.),
    tokenizer=dict(name_or_path=data_root + '/beit3_demo.spm'),
    max_text_len=24,  # the longest demo question has 19 tokens
    answer_list=data_root + '/annotations/vqa_answer_list.txt',
    init_cfg=None)

# loading and packing only; the square resize of the test pipeline lets the
# inferencer take images of any size
train_pipeline = [_base_.train_pipeline[0], _base_.train_pipeline[-1]]
test_pipeline = [dict(t, scale=(64, 64)) if t.type == 'Resize' else t
                 for t in _base_.test_pipeline]
train_dataloader = dict(
    batch_size=32, num_workers=0, persistent_workers=False,
    dataset=dict(
        _delete_=True, type='COCOVQA', data_root=data_root,
        data_prefix='images/train',
        question_file='annotations/vqa_train_questions.json',
        ann_file='annotations/vqa_train_annotations.json',
        pipeline=train_pipeline))
val_dataloader = dict(train_dataloader, batch_size=64, dataset=dict(
    train_dataloader['dataset'], data_prefix='images/val',
    question_file='annotations/vqa_val_questions.json',
    ann_file='annotations/vqa_val_annotations.json', pipeline=test_pipeline))
test_dataloader = val_dataloader
test_evaluator = dict(_delete_=True, type='VQAAcc')

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=5e-4, betas=(0.9, 0.98), weight_decay=0.01),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=1.0, custom_keys={'head.': dict(lr_mult=20.)}))
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=1e-2, end=2),
    dict(_base_.param_scheduler[1], begin=2, end=15),
]
train_cfg = dict(max_epochs=15, val_interval=3)
default_hooks = dict(logger=dict(interval=20))
auto_scale_lr = dict(base_batch_size=32)
randomness = dict(seed=0)
