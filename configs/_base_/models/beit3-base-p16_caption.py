# BEiT3Caption, the official BEiT3ForCaptioning, base, at 480 from the
# pretraining file: image and caption through the fusion encoder (with the
# output norm) under the seq2seq mask, mlm_head at the masked positions;
# drop path 0.1 and activation checkpointing as in the official runs.
# Training: captions of up to 32 tokens, a share mask_prob of them
# corrupted and predicted (0.6, the official default; the official docs'
# command passes 0.7), label smoothing 0.1, the worst 20% of the token
# losses dropped after step 12000. Decoding: beam 3, length penalty 0.6, up
# to 64 tokens (the official num_max_bpe_tokens of evaluation).
_base_ = ['./beit3-base-p16_multimodal.py']

model = dict(
    type='BEiT3Caption',
    backbone=dict(
        img_size=480, drop_path_rate=0.1, output_norm=True, with_cp=True),
    max_text_len=32,
    mask_prob=0.6,
    label_smoothing=0.1,
    drop_worst_ratio=0.2,
    drop_worst_after=12000,
    num_beams=3,
    length_penalty=0.6,
    max_len=64)
