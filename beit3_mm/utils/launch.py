"""Launch settings shared by ``tools/train.py`` and ``tools/test.py``."""
import torch
import torch.distributed as dist
from mmengine.config import Config


def setup_launch(cfg: Config) -> None:
    """Let a ``pytorch`` (torchrun) launch run on machines without GPUs.

    mmengine's launcher pins each process to a CUDA device and wraps the
    model in DDP with ``device_ids=[LOCAL_RANK]``; on the CPU that fails.
    Here, when no GPU is visible, the process group starts on gloo before
    the Runner (which then keeps it) and DDP gets ``device_ids=None``.
    GPU launches are left untouched.
    """
    if cfg.get('launcher', 'none') != 'pytorch' or torch.cuda.is_available():
        return
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    wrapper = dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper.update(cfg.get('model_wrapper_cfg') or {})
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
