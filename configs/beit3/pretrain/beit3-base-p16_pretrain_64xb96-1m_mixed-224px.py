# BEiT-3 base pretraining, the paper's recipe (sections 2.2-2.3): masked data
# modeling on images (ImageNet-21k), texts and image-text pairs in equal
# parts, 6144 samples a step (64 GPUs x (32 + 32 + 32)), 1M iterations at 224,
# AdamW (0.9, 0.98), eps 1e-6, lr 1e-3 with 10k warm-up and cosine, weight
# decay 0.05, drop path 0.1, activation checkpointing; visual tokens of BEiT
# v2's released VQ-KD tokenizer (under checkpoints/).
# On each of 8 nodes (NNODES, NODE_RANK, MASTER_ADDR set):
#   bash tools/dist_train.sh <this config> 8
# Other GPU counts keep 6144 a step, e.g. 32 GPUs with --cfg-options
#   train_dataloader.batch_size=192 train_dataloader.sampler.batch_size=192
_base_ = [
    '../../_base_/models/beit3-base-p16_pretrain.py',
    '../../_base_/datasets/beit3_pretrain_mixed-224px.py',
    '../../_base_/schedules/adamw_warmup-cosine_1m-iters_pretrain.py',
    'mmpretrain::_base_/default_runtime.py',
    '../../_base_/beit3_runtime.py',
]

default_hooks = dict(
    logger=dict(interval=100),
    checkpoint=dict(by_epoch=False, interval=10000, max_keep_ckpts=3))
log_processor = dict(by_epoch=False)
# the runtime's hooks, and the sampler resumed without reloading its batches
custom_hooks = _base_.custom_hooks + [dict(type='MixedSourceResumeHook')]
auto_scale_lr = dict(base_batch_size=6144)
randomness = dict(seed=0)
