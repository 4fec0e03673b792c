# BEiT-3 giant pretraining (patch 14, 1408 wide, 40 layers, 16 heads, FFN
# 6144; no released weights): the base recipe with the giant backbone under
# FSDP (full shard over every GPU, one unit per multiway layer, bf16 compute,
# fp32 weights and gradient reduction). The run saves ordinary beit3-mm
# checkpoints, the init_cfg of the giant downstream configs.
# Activation checkpointing is the backbone's with_cp (the strategy's is off).
#   bash tools/dist_train.sh configs/beit3/pretrain/beit3-giant-p14_pretrain_64xb96-1m_mixed-224px.py 8  # per node
# Per-GPU memory of the weights, gradients and AdamW states:
#   python tools/analysis_tools/memory_table.py --gpus 64
# At 224 the giant sees 16 x 16 patches of 14 px: BEiT3Pretrain resizes the
# tokenizer's view to 256 px, so that BEiT v2's tokenizer (patch 16) gives
# one code per patch.
_base_ = [
    './beit3-base-p16_pretrain_64xb96-1m_mixed-224px.py',
    '../../_base_/strategies/fsdp_bf16.py',
]

model = dict(backbone=dict(arch='giant', with_cp=True))
strategy = dict(activation_checkpointing=None)
# FSDP's mixed precision computes in bf16: no autocast, no loss scale
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    **{k: v for k, v in _base_.optim_wrapper.items()
       if k not in ('type', 'loss_scale')})
