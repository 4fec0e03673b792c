"""Convert a released BEiT-3 file into a beit3-mm (mmengine) checkpoint.

    python tools/model_converters/beit3_to_mm.py SRC DST

The kind of file is detected from its keys:

=============  ==========================================  =================
kind           keys beside ``beit3.*``                     beit3-mm model
=============  ==========================================  =================
pretrain       ``mim_head.*``, ``mlm_head.*``              backbone + heads
itc/retrieval  ``vision_head``, ``language_head``,         retrieval model
               ``logit_scale``
in1k           ``fc_norm.*``, ``head.*``                   ImageClassifier
vqa            ``pooler.*``, ``head.*``                    VQA model
nlvr2          ``head.norm1.*`` ...                        NLVR2 model
captioning     ``mlm_head.*``                              captioning model
backbone       none                                        any
=============  ==========================================  =================

``beit3.*`` becomes ``backbone.*``; task heads keep their official names at
the top level, except for the ImageNet classifier, which becomes an
mmpretrain ``ImageClassifier`` (``backbone.fc_norm``, ``head.fc``, vision
experts only). This is ``beit3_mm.models.utils.released_to_mm``, the
mapping that ``init_cfg`` reads a released file with. The position table
keeps its resolution: a model of another input size resizes it as it loads
(``BEiT3``'s state-dict pre-hook, the official bicubic formula). Official
training checkpoints (with ``optimizer``, ``args``, ...) are accepted; only
their model weights are kept.
"""
import argparse
import os
import os.path as osp
from typing import Dict, List, Tuple

import torch

from beit3_mm.models.utils import (model_state_dict, released_to_mm,
                                   summarize_keys)
from beit3_mm.utils import read_checkpoint

Tensor = torch.Tensor


def convert(
        state: Dict[str, Tensor]) -> Tuple[str, Dict[str, Tensor], List[str]]:
    """:func:`~beit3_mm.models.utils.released_to_mm`, refusing a file whose
    heads are of no released task (the converter could not name them).

    Returns:
        The kind, the new state dict and the dropped keys.
    """
    kind, out, dropped = released_to_mm(state)
    if kind is None:
        heads = sorted(k for k in out if not k.startswith('backbone.'))
        raise ValueError(f'unrecognised BEiT-3 head keys: {heads[:8]}')
    return kind, out, dropped


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('src', help='released BEiT-3 .pth file')
    parser.add_argument('dst', help='output mmengine checkpoint')
    args = parser.parse_args()

    state = model_state_dict(read_checkpoint(args.src), args.src)
    kind, out, dropped = convert(state)
    if osp.dirname(args.dst):
        os.makedirs(osp.dirname(args.dst), exist_ok=True)
    torch.save(
        dict(state_dict=out,
             meta=dict(beit3_kind=kind, source=osp.basename(args.src))),
        args.dst)
    print(f'{args.src}: {kind} file, {len(state)} tensors')
    print(f'mapped {len(out)}: {summarize_keys(list(out))}')
    print(f'dropped {len(dropped)}' +
          (f': {summarize_keys(dropped)}' if dropped else ''))
    print(f'saved {args.dst}')


if __name__ == '__main__':
    main()
