# BEiT3Retrieval, the official dual encoder, base, at 384 from the ITC file,
# drop path 0.2 and activation checkpointing as in the official runs.
_base_ = ['./beit3-base-p16_multimodal.py']

model = dict(
    type='BEiT3Retrieval',
    backbone=dict(
        img_size=384, drop_path_rate=0.2, output_norm=True, with_cp=True),
    init_cfg=dict(checkpoint='checkpoints/beit3_base_itc_patch16_224.pth'))
