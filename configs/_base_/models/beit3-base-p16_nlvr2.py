# BEiT3NLVR2, the official BEiT3ForVisualReasoning, base, at 224 from the
# pretraining file, drop path 0.2, with the output norm.
_base_ = ['./beit3-base-p16_multimodal.py']

model = dict(
    type='BEiT3NLVR2',
    backbone=dict(img_size=224, drop_path_rate=0.2, output_norm=True))
