# The embedded VQ-KD demo: a tiny tokenizer trained on the CPU in under a
# minute on the pretraining demo's images (1-3 shapes anywhere on a
# background of a random tint), distilling the tiny BEiT-3 classifier of the
# classification demo (its last layer's patch tokens): a teacher whose
# features were learned on the demo shapes, as CLIP's were on real images.
# Its codes say what a patch holds more than where it is: over the demo
# images the best guess of a code from its position alone is right for 18%
# of the patches (26% on single centred shapes on dark noise, and more with
# an earlier teacher layer). Run, from the repository root:
#   python tools/misc/make_demo_data.py classification --out data/demo_cls
#   python tools/train.py \
#       configs/beit3/classification/beit3-tiny-p8_1xb32-40e_demo-shapes.py
#   python tools/misc/make_demo_data.py pretrain --out data/demo_pretrain
#   python tools/train.py configs/beit3/vqkd/<this file>
#   python tools/model_converters/vqkd_to_official.py \
#       work_dirs/<this config>/epoch_20.pth data/demo_vqkd.pth
# data/demo_vqkd.pth is the tokenizer of the BEiT-3 pretraining demo:
#   VQKDTokenizer(arch=tiny_arch, img_size=32, num_embed=64, embed_dims=8,
#                 init_cfg=dict(type='Pretrained',
#                               checkpoint='data/demo_vqkd.pth'))
# (the checkpoint itself also loads that way, its teacher left out).
# The official recipe at demo scale: random resized crops, AdamW, warm-up +
# cosine; 64 codes of 8 dims, since the demo's 16 patches per image hold only
# some 30-40 kinds of patch (about 32 of the 64 codes in use at the end).
_base_ = [
    './vqkd-base-p16-d3_clip-b16_8xb64-100e_in1k.py',
    '../../_base_/models/beit3-tiny-p8_demo.py',
]

teacher_checkpoint = ('work_dirs/beit3-tiny-p8_1xb32-40e_demo-shapes/'
                      'epoch_40.pth')
model = dict(
    arch=dict(_delete_=True, **_base_.tiny_arch),
    img_size=32,
    num_embed=64,
    embed_dims=8,
    decoder_depth=1,
    decoder_out_dims=64,
    teacher=dict(
        _delete_=True,
        type='BEiT3',
        arch=_base_.tiny_arch,
        img_size=32,
        with_language=False,
        out_type='featmap',
        init_cfg=dict(type='Pretrained', checkpoint=teacher_checkpoint)),
    teacher_neck=None,
    # the classifier's input normalisation (ImageNet mean / std)
    teacher_mean=[123.675, 116.28, 103.53],
    teacher_std=[58.395, 57.12, 57.375])

# the recipe's pipeline at 32, cropping less of the small images
train_pipeline = [
    dict(t, scale=32, crop_ratio_range=(0.35, 1.0))
    if t.type == 'RandomResizedCrop' else t for t in _base_.train_pipeline
]
train_dataloader = dict(
    batch_size=32, num_workers=0, persistent_workers=False, pin_memory=False,
    dataset=dict(
        _delete_=True, type='CustomDataset', data_root='data/demo_pretrain',
        data_prefix='images', with_label=False, pipeline=train_pipeline))

optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(_base_.param_scheduler[0], end=2),
    dict(_base_.param_scheduler[1], begin=2, end=20),
]
train_cfg = dict(max_epochs=20)
default_hooks = dict(logger=dict(interval=8))
auto_scale_lr = dict(base_batch_size=32)
