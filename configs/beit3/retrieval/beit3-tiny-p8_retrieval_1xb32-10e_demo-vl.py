# The embedded demo: a tiny BEiT-3 dual encoder trained from scratch on the
# generated vision-language set (64x64 scenes of coloured shapes, three
# captions each), on the CPU in a few minutes. Make the data (and its
# tokenizer) with
#   python tools/misc/make_demo_data.py vl --out data/demo_vl
# It keeps the recipe's structure (contrastive loss, layer decay, AdamW,
# warm-up + cosine, RetrievalValLoop) at a scale that runs anywhere.
_base_ = [
    './beit3-base-p16_retrieval_16xb192-15e_coco-384px.py',
    '../../_base_/models/beit3-tiny-p8_demo.py',
]

model = dict(
    backbone=dict(
        arch=dict(_delete_=True, **_base_.tiny_arch),
        img_size=64,
        vocab_size=128,  # >= the ids of the demo tokenizer (about 70)
        drop_path_rate=0.,
        with_cp=False),
    tokenizer=dict(name_or_path='data/demo_vl/beit3_demo.spm'),
    max_text_len=32,  # the longest demo caption has 27 tokens
    init_cfg=None)

# The recipe's pipelines without crop, flip or resize: the captions say
# "left" and "right".
train_pipeline, test_pipeline = (
    [t for t in p if t.type in ('LoadImageFromFile', 'PackInputs')]
    for p in (_base_.beit3_train_pipeline, _base_.beit3_test_pipeline))
train_dataloader = dict(
    batch_size=32, num_workers=0, persistent_workers=False,
    dataset=dict(
        data_root='data/demo_vl', ann_file='annotations/captions_train.json',
        data_prefix='images', pipeline=train_pipeline))
val_dataloader = dict(train_dataloader, batch_size=64, dataset=dict(
    train_dataloader['dataset'], ann_file='annotations/captions_val.json',
    pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.9))
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=1e-2, end=1),
    dict(_base_.param_scheduler[1], eta_min=1e-5, begin=1, end=10),
]
train_cfg = dict(max_epochs=10, val_interval=5)
default_hooks = dict(
    logger=dict(interval=10), checkpoint=dict(interval=5))
auto_scale_lr = dict(base_batch_size=32)
randomness = dict(seed=0)
