"""Turn a checkpoint saved under a DeepSpeed or FSDP strategy into an
ordinary beit3-mm checkpoint (``state_dict`` + ``meta``, fp32) for
``tools/test.py``, ``load_from``, ``init_cfg`` and the inferencers.

- DeepSpeed (ZeRO-0/1/2/3; a folder such as ``work_dir/epoch_10.pth/``):
  the fp32 master weights are gathered from every rank's optimizer shard
  (DeepSpeed's ``zero_to_fp32``), the buffers and frozen weights come from
  the model states; every file is read with ``weights_only=True``.
- FSDP with ``state_dict_cfg='full'`` (``configs/_base_/strategies/
  fsdp_bf16.py``): the file is already one; its optimizer and scheduler
  states are dropped. Sharded (``'local'``) FSDP folders are refused: they
  need the same number of processes to be read back.

    python tools/model_converters/consolidate_checkpoint.py \\
        work_dirs/CONFIG/epoch_10.pth checkpoints/CONFIG_epoch_10.pth
"""
import argparse
import glob
import os.path as osp
from typing import Dict

import torch

from beit3_mm.utils import read_checkpoint


def consolidate(src: str) -> Dict[str, dict]:
    """The ordinary checkpoint (``state_dict``, ``meta``) of ``src``."""
    if not osp.isdir(src):
        ckpt = read_checkpoint(src)
        return dict(state_dict=ckpt['state_dict'], meta=ckpt.get('meta', {}))
    if glob.glob(osp.join(src, 'rank*.pth')):
        raise ValueError(
            f'{src} holds sharded FSDP states (state_dict_cfg=\'local\'): '
            f'resume it with the same number of processes, or train with '
            f"state_dict_cfg='full' (configs/_base_/strategies/fsdp_bf16.py)")
    model_states = glob.glob(osp.join(src, '*mp_rank_00_model_states.pt'))
    if not model_states:
        raise FileNotFoundError(
            f'{src} is neither a checkpoint file nor a DeepSpeed folder '
            f'(no mp_rank_00_model_states.pt)')
    from deepspeed.utils.zero_to_fp32 import \
        get_fp32_state_dict_from_zero_checkpoint

    from beit3_mm.engine.strategies import weights_only_torch_load
    with weights_only_torch_load():
        client = torch.load(model_states[0], map_location='cpu')
        state_dict = get_fp32_state_dict_from_zero_checkpoint(
            osp.dirname(osp.abspath(src)), tag=osp.basename(src.rstrip('/')))
    return dict(
        state_dict={k: v.float() if v.is_floating_point() else v
                    for k, v in state_dict.items()},
        meta=client.get('meta', {}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description='Consolidate a DeepSpeed / FSDP checkpoint into an '
        'ordinary beit3-mm checkpoint')
    parser.add_argument('src', help='checkpoint folder (DeepSpeed) or file')
    parser.add_argument('dst', help='output .pth file')
    args = parser.parse_args()
    ckpt = consolidate(args.src)
    torch.save(ckpt, args.dst)
    print(f'{args.src} -> {args.dst}: {len(ckpt["state_dict"])} tensors')


if __name__ == '__main__':
    main()
