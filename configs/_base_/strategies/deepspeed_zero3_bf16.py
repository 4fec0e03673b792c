# DeepSpeed ZeRO-3: weights, gradients and optimizer states sharded over
# the ranks, bf16 weights and activations, fp32 master weights. See
# deepspeed_zero2_bf16.py for how to use it.
_base_ = ['./deepspeed_zero2_bf16.py']

strategy = dict(
    zero_optimization=dict(
        _delete_=True,
        stage=3,
        overlap_comm=False,
        contiguous_gradients=True,
        reduce_bucket_size=int(5e8),
        stage3_prefetch_bucket_size=int(5e8),
        stage3_param_persistence_threshold=int(1e5),
        # save_optimizer=False checkpoints (save_best) gather the weights
        stage3_gather_16bit_weights_on_model_save=True))
