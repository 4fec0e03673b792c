# What the BEiT-3 retrieval recipes share on top of mmpretrain's retrieval
# dataset bases (coco_retrieval.py / flickr30k_retrieval.py): the dual
# encoder initialised from the ITC file at 384, the official pre-processing,
# AdamW with layer decay, fp16 and activation checkpointing as in the
# official runs, and mmpretrain's retrieval loops. Leaves set the dataset,
# lr and epochs.
_base_ = [
    './models/beit3-base-p16_retrieval.py',
    './datasets/retrieval_pipelines_384px.py',
    './schedules/adamw_layer-decay_warmup-cosine_amp.py',
    'mmpretrain::_base_/default_runtime.py',
    './beit3_runtime.py',
]

val_cfg = dict(type='RetrievalValLoop')
test_cfg = dict(type='RetrievalTestLoop')

# keep the best text-to-image recall@1 (IR@1, the first number reported)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(
        max_keep_ckpts=2, save_best='t2i/retrieval/Recall@1',
        rule='greater'))
randomness = dict(seed=42)
