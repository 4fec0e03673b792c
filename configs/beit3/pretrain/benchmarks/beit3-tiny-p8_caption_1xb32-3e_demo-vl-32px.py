# The pretraining demo's vision-language benchmark: the captioning demo
# fine-tuned for 3 epochs (of its 12) from the pretraining demo's checkpoint
# (model.init_cfg, as a released file), on the VL demo set made at the
# pretraining demo's 32 px and read with its text tokenizer:
#   python tools/misc/make_demo_data.py vl --out data/demo_vl_32px --img-size 32
# The same run from scratch, at the same budget:
#   python tools/train.py configs/beit3/pretrain/benchmarks/beit3-tiny-p8_caption_1xb32-3e_demo-vl-32px.py \
#       --cfg-options model.init_cfg=None
_base_ = ['../../captioning/beit3-tiny-p8_caption_1xb32-12e_demo-vl.py']

pretrained = ('work_dirs/beit3-tiny-p8_pretrain_1xb48-1200it_demo-mixed/'
              'iter_1200.pth')
data_root = 'data/demo_vl_32px'
model = dict(
    backbone=dict(
        img_size=32,
        vocab_size=64,  # the pretraining demo's text rows
        num_text_positions=1024),  # its position table (the default)
    tokenizer=dict(name_or_path='data/demo_pretrain/beit3_demo.spm'),
    # its tokenizer splits the longest caption into 33 tokens
    max_text_len=40,
    max_len=40,
    init_cfg=dict(_delete_=True, type='Pretrained', checkpoint=pretrained))

test_pipeline = [
    dict(t, scale=(32, 32)) if t.type == 'Resize' else t
    for t in _base_.test_pipeline
]
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + '/annotations/captions_val.json')
test_evaluator = val_evaluator

param_scheduler = [
    dict(_base_.param_scheduler[0], end=1),
    dict(_base_.param_scheduler[1], begin=1, end=3),
]
train_cfg = dict(max_epochs=3, val_interval=3)
default_hooks = dict(checkpoint=dict(interval=3))
