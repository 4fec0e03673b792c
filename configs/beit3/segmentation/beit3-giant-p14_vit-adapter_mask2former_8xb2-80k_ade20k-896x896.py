# BEiT-3 giant (patch 14: 64 x 64 patches at 896) + ViT-Adapter +
# Mask2Former on ADE20K at 896: the large recipe with four 10-layer
# interaction stages, 16 deformable heads, drop path 0.4 and the 1024-wide
# head reading 1408-wide maps, from a giant pretrained with beit3-mm
# (init_cfg=None for scratch).
# FSDP with fp32 weights and fp16 autocast (AmpOptimWrapper, sharded loss
# scaler): mmcv's CUDA deformable attention has no bf16 kernel. Activation
# checkpointing is the adapter's with_cp (layers, injectors, extractors).
_base_ = [
    './beit3-large-p16_vit-adapter_mask2former_8xb2-80k_ade20k-896x896.py',
    '../../_base_/strategies/fsdp_bf16.py',
]

model = dict(
    backbone=dict(
        arch='giant',
        drop_path_rate=0.4,
        interaction_indexes=[[0, 9], [10, 19], [20, 29], [30, 39]],
        init_cfg=dict(
            checkpoint='checkpoints/beit3-giant-p14_pretrain_mm.pth')),
    decode_head=dict(in_channels=[1408] * 4))
optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic')
strategy = dict(
    model_wrapper=dict(mixed_precision=None), activation_checkpointing=None)
