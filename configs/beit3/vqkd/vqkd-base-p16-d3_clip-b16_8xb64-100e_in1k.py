# BEiT v2's VQ-KD visual tokenizer trained on ImageNet-1k, the official
# recipe (unilm/beit2 TOKENIZER.md, run_vqkd_training.py): ViT-B/16 encoder,
# 3-layer decoder, 8192 x 32 codebook (EMA decay 0.99, k-means init),
# distilling CLIP ViT-B/16's patch tokens (after ln_post and the projection,
# 512 dims) with the cosine loss; 8 GPUs x 64, AdamW lr 5e-5 x 512 / 128 =
# 2e-4, betas (0.9, 0.99), weight decay 1e-4 (none on norms, biases, the
# class tokens and position tables), 10 warm-up epochs of 100, cosine to
# 1e-5, both per iteration; RandomResizedCrop 224 (scale 0.08-1, bicubic)
# and a horizontal flip. The official run uses fp16 autocast: add --amp.
# The official run validates each epoch; this one trains only.
#
# The teacher's weights: OpenAI's ViT-B/16 state dict, e.g.
#   torch.save(clip.load('ViT-B/16', device='cpu', jit=False)[0]
#              .state_dict(), 'ViT-B-16.pth')
# converted with mmpretrain's
#   tools/model_converters/openai-clip_to_mmpretrain-clip.py ViT-B-16.pth \
#       checkpoints/clip-vit-base-p16_openai.pth
# The result, in the released layout (loads in VQKDTokenizer and in BEiT v2):
#   python tools/model_converters/vqkd_to_official.py \
#       work_dirs/vqkd-base-p16-d3_clip-b16_8xb64-100e_in1k/epoch_100.pth \
#       vqkd_encoder_base_decoder_3x768x12_clip.pth
_base_ = [
    '../../_base_/schedules/adamw_layer-decay_warmup-cosine.py',
    'mmpretrain::_base_/default_runtime.py',
    '../../_base_/beit3_runtime.py',
]
custom_imports = dict(imports=['beit3_mm'], allow_failed_imports=False)

clip_checkpoint = 'checkpoints/clip-vit-base-p16_openai.pth'
model = dict(
    type='VQKDTrainer',
    arch='base',
    img_size=224,
    num_embed=8192,
    embed_dims=32,
    decay=0.99,
    quantize_kmeans_init=True,
    decoder_depth=3,  # vqkd_encoder_base_decoder_3x768x12_clip
    decoder_out_dims=512,
    # CLIP's image tower: patch tokens of the last layer after ln_post
    # (mmpretrain's ln1), then @ visual.proj (CLIPProjection)
    teacher=dict(
        type='mmpretrain.VisionTransformer',
        arch='b',
        img_size=224,
        patch_size=16,
        pre_norm=True,
        final_norm=True,
        out_type='featmap',
        norm_cfg=dict(type='LN', eps=1e-5),
        layer_cfgs=dict(act_cfg=dict(type='mmpretrain.QuickGELU')),
        init_cfg=dict(
            type='Pretrained', checkpoint=clip_checkpoint,
            prefix='visual.')),
    teacher_neck=dict(
        type='mmpretrain.CLIPProjection',
        in_channels=768,
        out_channels=512,
        init_cfg=dict(
            type='Pretrained', checkpoint=clip_checkpoint,
            prefix='visual_proj.')),
    teacher_mean=[0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255],
    teacher_std=[0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255],
    # the tokenizer's view: pixel / 127.5 - 1 (process_type 'default')
    data_preprocessor=dict(
        type='ImgDataPreprocessor',
        mean=[127.5] * 3,
        std=[127.5] * 3,
        bgr_to_rgb=True))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.08, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='ImageNet',
        data_root='data/imagenet',
        split='train',
        pipeline=train_pipeline))

# The fine-tuning recipes' warm-up + cosine (per iteration, epoch-based
# loop) with VQ-KD's optimizer: no layer decay, no weight decay on 1-D
# parameters, biases, class tokens and position tables (the teacher and the
# EMA codebook take no gradient).
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=2e-4, betas=(0.9, 0.99), eps=1e-8,
        weight_decay=1e-4),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        flat_decay_mult=0.,
        custom_keys={
            '.pos_embed': dict(decay_mult=0.),
            '.cls_token': dict(decay_mult=0.)
        }))
# official: linear from 0 (LinearLR needs a factor > 0)
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=1e-3, begin=0, end=10),
    dict(_base_.param_scheduler[1], eta_min=1e-5, begin=10, end=100),
]
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=100)
val_cfg = None
val_dataloader = None
val_evaluator = None
test_cfg = None
test_dataloader = None
test_evaluator = None

default_hooks = dict(
    checkpoint=dict(interval=1, max_keep_ckpts=2), logger=dict(interval=10))
custom_hooks = [*_base_.custom_hooks, dict(type='CodebookUsageHook')]
auto_scale_lr = dict(base_batch_size=512)
randomness = dict(seed=0)
