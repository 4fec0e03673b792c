# What the vision-language models share: the multiway BEiT-3 base with the
# released sentencepiece tokenizer, 64 text tokens, initialised from the
# pretraining file (its 224 position table is resized on loading to the
# model's img_size). A task's model base sets the model type, the image
# size, drop path and the output norm.
custom_imports = dict(imports=['beit3_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(type='BEiT3', arch='base'),
    tokenizer=dict(type='BEiT3Tokenizer', name_or_path='data/beit3.spm'),
    max_text_len=64,
    init_cfg=dict(
        type='Pretrained',
        checkpoint='checkpoints/beit3_base_patch16_224.pth'))
