# DeepSpeed ZeRO-2: optimizer states and gradients sharded over the ranks,
# bf16 weights and activations, fp32 master weights in the optimizer.
# Add it to a task config with one line,
#   _base_ = ['../classification/beit3-base-p16_8xb128-coslr-50e_in1k.py',
#             '../../_base_/strategies/deepspeed_zero2_bf16.py']
# and launch with tools/dist_train.sh (or slurm_train.sh), on GPUs or CPUs.
# The config's optim_wrapper (optimizer, layer decay, clip_grad) is kept.
# Checkpoints are folders; tools/model_converters/consolidate_checkpoint.py
# turns one into an ordinary beit3-mm checkpoint. Activation checkpointing:
# model.backbone.with_cp=True.
runner_type = 'FlexibleRunner'
strategy = dict(
    type='BEiT3DeepSpeedStrategy',
    bf16=dict(enabled=True),
    zero_optimization=dict(
        stage=2,
        allgather_partitions=True,
        reduce_scatter=True,
        allgather_bucket_size=int(5e8),
        reduce_bucket_size=int(5e8),
        overlap_comm=False,
        contiguous_gradients=True),
    # cast the images to bf16 (mmpretrain / mmdet / mmseg: 'inputs';
    # beit3-mm vision-language models: 'images')
    inputs_to_half=['inputs', 'images'])
