# BEiT-3 large + ViT-Adapter + Mask2Former on ADE20K at 896x896, ViT-Adapter's
# BEiT-L recipe: the large model with its 1024-wide head, the recipe's
# pipelines at 896 (slide stride 512), AdamW lr 2e-5, 80k iterations.
_base_ = ['../../_base_/beit3-large-p16_vit-adapter_mask2former_ade20k.py']

crop_size = (896, 896)
model = dict(data_preprocessor=dict(size=crop_size),
             test_cfg=dict(crop_size=crop_size, stride=(512, 512)))
train_pipeline = [
    dict(t, scales=[int(896 * x * 0.1) for x in range(5, 21)], max_size=3584)
    if t.type == 'RandomChoiceResize' else dict(t, crop_size=crop_size)
    if t.type == 'RandomCrop' else t for t in _base_.train_pipeline]
test_pipeline = [dict(t, scale=(3584, 896)) if t.type == 'Resize' else t
                 for t in _base_.test_pipeline]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))

optim_wrapper = dict(optimizer=dict(lr=2e-5))
max_iters, interval = 80000, 8000
param_scheduler = [
    _base_.param_scheduler[0], dict(_base_.param_scheduler[1], end=max_iters)]
train_cfg = dict(max_iters=max_iters, val_interval=interval)
default_hooks = dict(checkpoint=dict(interval=interval))
