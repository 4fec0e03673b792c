# What the BEiT-3 retrieval recipes share on top of a retrieval dataset base
# (datasets/coco_retrieval_384px.py, flickr30k_retrieval_384px.py): the dual
# encoder initialised from the ITC file at 384, AdamW with layer decay, fp16
# and activation checkpointing as in the official runs, 3072 pairs a step,
# and mmpretrain's retrieval loops. Leaves set the batch per GPU, lr and
# epochs.
_base_ = [
    './models/beit3-base-p16_retrieval.py',
    './schedules/adamw_layer-decay_warmup-cosine_amp.py',
    './beit3_vl_runtime.py',
]

val_cfg = dict(type='RetrievalValLoop')
test_cfg = dict(type='RetrievalTestLoop')

# keep the best text-to-image recall@1 (IR@1, the first number reported)
default_hooks = dict(
    checkpoint=dict(save_best='t2i/retrieval/Recall@1', rule='greater'))
auto_scale_lr = dict(base_batch_size=3072)
