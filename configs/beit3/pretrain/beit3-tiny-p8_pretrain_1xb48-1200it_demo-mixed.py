# The pretraining demo: a tiny BEiT-3 (the arch of the other demos) trained
# by masked data modeling on the generated images, texts and captioned scenes
# (32x32, 16 patches), on the CPU in about three minutes. The command chain
# (README, "Pretraining"):
#   python tools/misc/make_demo_data.py pretrain --out data/demo_pretrain
#   (the VQ-KD demo, configs/beit3/vqkd/vqkd-tiny-p8-d1_demo-*.py, writes
#   its tokenizer to data/demo_vqkd.pth)
#   python tools/train.py \
#       configs/beit3/pretrain/beit3-tiny-p8_pretrain_1xb48-1200it_demo-mixed.py
# then the fine-tunes of configs/beit3/pretrain/benchmarks/, which start from
# work_dirs/<this config>/iter_1200.pth. 1200 iterations, not fewer: at 600,
# two of three seeds gave checkpoints no better than scratch for the
# classification demo (README, "Pretraining"). It keeps the recipe (equal
# parts per batch, block-wise image masks, AdamW (0.9, 0.98), warm-up +
# cosine, the resume hook) at a scale that runs anywhere.
_base_ = [
    './beit3-base-p16_pretrain_64xb96-1m_mixed-224px.py',
    '../../_base_/models/beit3-tiny-p8_demo.py',
]

# The visual tokenizer: a file in the released layout with the tiny arch at
# 32 px and this codebook (the VQ-KD demo's).
vqkd_checkpoint = 'data/demo_vqkd.pth'
vqkd_num_embed = 64
vqkd_code_dims = 8
data_root = 'data/demo_pretrain/'
text_tokenizer = dict(
    type='BEiT3Tokenizer', name_or_path=data_root + 'beit3_demo.spm')

model = dict(
    backbone=dict(
        arch=dict(_delete_=True, **_base_.tiny_arch),
        img_size=32,
        vocab_size=64,  # >= the ids of the demo tokenizer (46)
        drop_path_rate=0.,
        with_cp=False),
    target_generator=dict(
        arch=dict(_delete_=True, **_base_.tiny_arch),
        img_size=32,
        num_embed=vqkd_num_embed,
        embed_dims=vqkd_code_dims,
        init_cfg=dict(checkpoint=vqkd_checkpoint)),
    tokenizer=text_tokenizer,
    max_text_len=40,  # the longest demo caption has 33 tokens
    mask_min_num_patches=4)  # 6 of the 16 patches are masked

image_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.6, 1.0)),
    dict(type='PackPretrainInputs', source='image'),
]
train_dataloader = dict(
    batch_size=48,
    num_workers=0,
    persistent_workers=False,
    pin_memory=False,
    sampler=dict(batch_size=48),
    dataset=dict(
        _delete_=True,
        type='ConcatDataset',
        datasets=[
            dict(
                type='CustomDataset',
                data_root=data_root,
                data_prefix='images',
                with_label=False,
                pipeline=image_pipeline),
            dict(
                type='PretrainTextCorpus',
                data_root=data_root,
                data_files='text/corpus.txt',
                tokenizer=text_tokenizer,
                max_text_len=40,
                pipeline=_base_.text_pipeline),
            dict(
                type='ImageTextShards',  # the scenes are 32x32 already
                data_root=data_root,
                shards='pairs/shards/*.tar',
                pipeline=[dict(type='PackPretrainInputs')]),
        ]))

# fp32 on the CPU
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(_base_.optim_wrapper.optimizer, lr=2e-3),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=1.0))
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=1e-2, end=50),
    dict(_base_.param_scheduler[1], eta_min=1e-5, begin=50, end=1200),
]
train_cfg = dict(max_iters=1200)
default_hooks = dict(
    logger=dict(interval=25), checkpoint=dict(interval=600))
auto_scale_lr = dict(base_batch_size=48)
