# The BEiT-3 fine-tuning schedule (official run_beit3_finetuning.py): AdamW
# with layer-wise lr decay (LayerDecayOptimWrapperConstructor: no weight
# decay on biases, norms, the CLS token and the vision position table; the
# logged lr is the head's), a linear warm-up from 1e-6 then cosine to 1e-6,
# both stepped per iteration, an epoch-based loop validating every epoch.
# The numbers are those of the ImageNet-1k recipe: lr 7e-4, layer decay 0.65,
# weight decay 0.05, 5 warm-up epochs of 50. A recipe with other numbers sets
# them and patches the two schedulers (lists are replaced, not merged), e.g.
# lr 2e-4 with 3 warm-up epochs of 15:
#   optim_wrapper = dict(optimizer=dict(lr=2e-4))
#   param_scheduler = [
#       dict(_base_.param_scheduler[0], start_factor=1e-6 / 2e-4, end=3),
#       dict(_base_.param_scheduler[1], begin=3, end=15)]
#   train_cfg = dict(max_epochs=15)
_base_ = ['mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py']

optim_wrapper = dict(
    optimizer=dict(lr=7e-4, weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(_delete_=True, layer_decay_rate=0.65))

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-6 / 7e-4,
        by_epoch=True,
        end=5,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-6,
        by_epoch=True,
        begin=5,
        end=50,
        convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=50, val_interval=1)
