# BEiT-3 base NoCaps, the released recipe: the COCO captioning recipe (the
# official NoCaps run trains on COCO Karpathy train + restval) with lr 1e-5,
# validated on NoCaps val (overall and in / near / out-domain CIDEr, the best
# checkpoint kept by the overall CIDEr) and tested on NoCaps test, whose
# captions are hidden: tools/test.py writes nocaps_test.caption.json for the
# EvalAI server. NoCapsImages gives one sample per image (mmpretrain's NoCaps
# one per caption, ten decodes of each image).
_base_ = ['./beit3-base-p16_caption_8xb32-10e_coco-480px.py']

optim_wrapper = dict(optimizer=dict(lr=1e-5))
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=1e-6 / 1e-5),
    _base_.param_scheduler[1],
]

val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='NoCapsImages',
        data_root='data/nocaps',
        data_prefix=dict(img_path='images/val'),
        ann_file='annotations/nocaps_val_4500_captions.json',
        pipeline=_base_.test_pipeline))
test_dataloader = dict(
    dataset=dict(
        val_dataloader['dataset'],
        data_prefix=dict(img_path='images/test'),
        ann_file='annotations/nocaps_test_image_info.json'))
val_evaluator = dict(
    type='NoCapsMetric',
    ann_file='data/nocaps/annotations/nocaps_val_4500_captions.json')
test_evaluator = dict(
    type='NoCapsMetric',
    ann_file=None,
    format_only=True,
    outfile_prefix='nocaps_test')
default_hooks = dict(checkpoint=dict(save_best='nocaps/CIDEr'))
