"""Write a VQ-KD tokenizer trained here in the layout of the released BEiT v2
tokenizer files.

    python tools/model_converters/vqkd_to_official.py SRC DST

SRC: a checkpoint of ``VQKDTrainer`` (``tools/train.py`` with a
``configs/beit3/vqkd`` config). DST: ``{'model': state}`` with exactly the
keys of the official ``modeling_vqkd.py`` (encoder, decoder, task layers,
quantizer with its statistics), the teacher and the optimizer left out: it
loads into ``VQKDTokenizer`` through ``init_cfg=dict(type='Pretrained',
checkpoint=DST)`` and into the official code
(``vqkd_encoder_base_decoder_*(pretrained=True, pretrained_weight=DST,
as_tokenzer=True)``, for a ViT-B/16 tokenizer).
"""
import argparse
import os
import os.path as osp

import torch

from beit3_mm.models.selfsup import vqkd_official_state
from beit3_mm.models.utils import model_state_dict, summarize_keys
from beit3_mm.utils import read_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('src', help='VQKDTrainer checkpoint (mmengine)')
    parser.add_argument('dst', help='output tokenizer file')
    args = parser.parse_args()

    state = model_state_dict(read_checkpoint(args.src), args.src)
    out = vqkd_official_state(state)
    if not out['quantize.embedding.initted'].all():
        raise SystemExit(f'{args.src}: the codebook was never initialised '
                         f'(saved before the first training step)')
    if osp.dirname(args.dst):
        os.makedirs(osp.dirname(args.dst), exist_ok=True)
    torch.save(dict(model=out), args.dst)
    dropped = [k for k in state if k not in out]
    print(f'{args.src}: kept {len(out)} tensors: '
          f'{summarize_keys(list(out))}')
    print(f'dropped {len(dropped)}' +
          (f': {summarize_keys(dropped)}' if dropped else ''))
    print(f'saved {args.dst}')


if __name__ == '__main__':
    main()
