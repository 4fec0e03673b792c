# The embedded captioning demo: a tiny BEiT-3 captioner trained from scratch
# on the generated vision-language set (64x64 scenes of coloured shapes,
# three captions each, in the LAVIS files of mmpretrain's COCOCaption), on
# the CPU in a few minutes, and scored by CaptionMetric on the 64 val
# scenes. Make the data (and its tokenizer) with
#   python tools/misc/make_demo_data.py vl --out data/demo_vl
# It keeps the recipe's structure (seq2seq masking and its loss, beam search
# with the cache, AdamW, warm-up + cosine, best checkpoint by CIDEr) at a
# scale that runs anywhere.
_base_ = [
    './beit3-base-p16_caption_8xb32-10e_coco-480px.py',
    '../../_base_/models/beit3-tiny-p8_demo.py',
]

data_root = 'data/demo_vl'
model = dict(
    backbone=dict(
        arch=dict(_delete_=True, **_base_.tiny_arch),
        img_size=64,
        vocab_size=128,  # >= the ids of the demo tokenizer (about 70)
        num_text_positions=34,  # max_text_len + 2 (rows 0, 1 are unused)
        drop_path_rate=0.,
        with_cp=False),
    tokenizer=dict(name_or_path=data_root + '/beit3_demo.spm'),
    max_len=32,  # the longest demo caption has 27 tokens
    init_cfg=None)

# No crop, flip or RandAugment: the captions name sides and colours. The
# square resize of the test pipeline lets the inferencer take any image.
train_pipeline = [
    t for t in _base_.train_pipeline
    if t.type in ('LoadImageFromFile', 'PackInputs')
]
test_pipeline = [
    dict(t, scale=(64, 64)) if t.type == 'Resize' else t
    for t in _base_.test_pipeline
]
train_dataloader = dict(
    batch_size=32, num_workers=0, persistent_workers=False,
    dataset=dict(
        data_root=data_root, data_prefix=dict(img_path='images'),
        pipeline=train_pipeline))
val_dataloader = dict(train_dataloader, batch_size=64, dataset=dict(
    train_dataloader['dataset'], ann_file='annotations/coco_karpathy_val.json',
    pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + '/annotations/captions_val.json')
test_evaluator = val_evaluator

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=1.0))
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=1e-2, end=1),
    dict(_base_.param_scheduler[1], eta_min=1e-5, begin=1, end=12),
]
# one validation, at the end (beam search and the Java scorers take seconds)
train_cfg = dict(max_epochs=12, val_interval=12)
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=12))
auto_scale_lr = dict(base_batch_size=32)
randomness = dict(seed=0)
