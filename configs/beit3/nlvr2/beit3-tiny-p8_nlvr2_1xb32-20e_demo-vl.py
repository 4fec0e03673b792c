# The embedded NLVR2 demo: a tiny BEiT-3 trained from scratch on generated
# pairs of shape scenes with true / false statements about them (half
# true), on the CPU in a few minutes. Make the data with
#   python tools/misc/make_demo_data.py vl --out data/demo_vl
# It keeps the recipe's structure (layer decay, AdamW, warm-up + cosine) at
# a scale that runs anywhere; no flip or crop, as the statements count
# shapes and name sides. From scratch the head starts at 10 x the official
# init (0.001 x, meant for a pretrained backbone): its second LayerNorm makes
# it invariant to the scale of dense1, so a nearly zero dense1 turns every
# AdamW step into a random redraw and the pair features never get a steady
# signal (the loss stays at 0.693).
_base_ = [
    './beit3-base-p16_nlvr2_8xb32-20e_nlvr2-224px.py',
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
    max_text_len=24,  # the longest demo statement has 19 tokens
    head_init_scale=10.,
    init_cfg=None)

# loading only in train; the square resize in test lets the inferencer take
# images of any size
train_pipeline = [
    dict(t, transforms=t.transforms[:1]) if t.type == 'ApplyToList' else t
    for t in _base_.train_pipeline
]
test_pipeline = [
    dict(t, transforms=[dict(s, scale=(64, 64)) if s.type == 'Resize' else s
                        for s in t.transforms]) if t.type == 'ApplyToList'
    else t for t in _base_.test_pipeline
]
train_dataloader = dict(
    batch_size=32, num_workers=0, persistent_workers=False,
    dataset=dict(
        data_root=data_root, ann_file='nlvr2/train.json',
        data_prefix='nlvr2/train', pipeline=train_pipeline))
val_dataloader = dict(train_dataloader, batch_size=64, dataset=dict(
    train_dataloader['dataset'], ann_file='nlvr2/dev.json',
    data_prefix='nlvr2/dev', pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.9))
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=1e-2, end=2),
    dict(_base_.param_scheduler[1], begin=2),
]
train_cfg = dict(max_epochs=20, val_interval=5)
default_hooks = dict(logger=dict(interval=20))
auto_scale_lr = dict(base_batch_size=32)
randomness = dict(seed=0)
