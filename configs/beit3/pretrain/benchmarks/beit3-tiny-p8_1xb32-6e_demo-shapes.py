# The pretraining demo's classification benchmark: the classification demo
# fine-tuned for 6 epochs (of its 40) from the pretraining demo's checkpoint,
# loaded through the backbone's init_cfg as a released file would be. The
# same run from scratch, at the same budget:
#   python tools/train.py configs/beit3/pretrain/benchmarks/beit3-tiny-p8_1xb32-6e_demo-shapes.py \
#       --cfg-options model.backbone.init_cfg=None
_base_ = ['../../classification/beit3-tiny-p8_1xb32-40e_demo-shapes.py']

pretrained = ('work_dirs/beit3-tiny-p8_pretrain_1xb48-1200it_demo-mixed/'
              'iter_1200.pth')
model = dict(
    backbone=dict(
        init_cfg=dict(_delete_=True, type='Pretrained',
                      checkpoint=pretrained)))

param_scheduler = [
    dict(_base_.param_scheduler[0], end=1),
    dict(_base_.param_scheduler[1], begin=1, end=6),
]
train_cfg = dict(max_epochs=6, val_interval=6)
default_hooks = dict(checkpoint=dict(interval=6))
