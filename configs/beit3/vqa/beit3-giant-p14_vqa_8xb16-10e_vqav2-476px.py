# BEiT-3 giant VQAv2 at 476 (34 x 34 patches of 14; 480 does not divide),
# from a giant pretrained with beit3-mm (no released weights): the large
# recipe with lr 1e-5 and drop path 0.2 (our starting point), under FSDP
# (full shard of the 1.9B weights, gradients and AdamW states, bf16
# compute). Activation checkpointing is the backbone's with_cp.
_base_ = [
    './beit3-large-p16_vqa_8xb16-10e_vqav2-480px.py',
    '../../_base_/strategies/fsdp_bf16.py',
]

size = 476
model = dict(
    backbone=dict(arch='giant', img_size=size, drop_path_rate=0.2),
    init_cfg=dict(checkpoint='checkpoints/beit3-giant-p14_pretrain_mm.pth'))
train_pipeline = [
    dict(t, scale=size) if 'scale' in t else dict(t, policies=[
        dict(p, magnitude_range=(0, 10 / size)) if p.type == 'Translate'
        else p for p in t.policies]) if t.type == 'RandAugment' else t
    for t in _base_.train_pipeline]
test_pipeline = [dict(t, scale=(size, size)) if 'scale' in t else t
                 for t in _base_.test_pipeline]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

strategy = dict(activation_checkpointing=None)
# FSDP's mixed precision computes in bf16: no autocast, no loss scale
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    **{k: v for k, v in _base_.optim_wrapper.items()
       if k not in ('type', 'loss_scale')})
optim_wrapper['optimizer'] = dict(optim_wrapper['optimizer'], lr=1e-5)
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=1e-6 / 1e-5),
    _base_.param_scheduler[1],
]
