# BEiT3Retrieval, the official dual encoder, base, at 384 from the ITC file
# (the 224 position table is resized on loading), drop path 0.2 and
# activation checkpointing as in the official runs.
custom_imports = dict(imports=['beit3_mm'], allow_failed_imports=False)

model = dict(
    type='BEiT3Retrieval',
    backbone=dict(
        type='BEiT3',
        arch='base',
        img_size=384,
        drop_path_rate=0.2,
        output_norm=True,
        with_cp=True),
    tokenizer=dict(type='BEiT3Tokenizer', name_or_path='data/beit3.spm'),
    max_text_len=64,
    init_cfg=dict(
        type='Pretrained',
        checkpoint='checkpoints/beit3_base_itc_patch16_224.pth'))
