# Zero-shot Flickr30k retrieval (test split) with the released large ITC
# file as it is: the base zero-shot config with the large dual encoder.
_base_ = ['./beit3-base-p16_zeroshot-retrieval_flickr30k.py']

model = dict(
    backbone=dict(arch='large'),
    init_cfg=dict(
        checkpoint='checkpoints/beit3_large_itc_patch16_224.pth'))
