# PyTorch FSDP: full shard (weights, gradients and optimizer states), one
# unit per multiway layer, bf16 compute with fp32 weights and gradient
# reduction, activation checkpointing per multiway layer. Add it to a task
# config with one line,
#   _base_ = ['../classification/beit3-base-p16_8xb128-coslr-50e_in1k.py',
#             '../../_base_/strategies/fsdp_bf16.py']
# and launch with tools/dist_train.sh (or slurm_train.sh), on GPUs or CPUs.
# Checkpoints are ordinary beit3-mm checkpoints (full state dicts, saved by
# rank 0). No activation checkpointing: strategy.activation_checkpointing=None
runner_type = 'FlexibleRunner'
strategy = dict(
    type='BEiT3FSDPStrategy',
    model_wrapper=dict(
        type='MMFullyShardedDataParallel',
        sharding_strategy='FULL_SHARD',
        auto_wrap_policy='multiway_layer_policy',
        # the frozen mask token shares the root unit with trained weights
        use_orig_params=True,
        mixed_precision=dict(
            param_dtype='bfloat16',
            reduce_dtype='float32',
            buffer_dtype='float32')),
    state_dict_cfg='full',
    activation_checkpointing=dict(check_fn='is_multiway_layer'))
