"""The training losses of an iteration: averaged over ranks, checked."""
import math
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.dist import all_gather_object, all_reduce, get_world_size
from mmengine.hooks import Hook

from beit3_mm.registry import HOOKS

Tensor = torch.Tensor


def image_paths(data_batch: Optional[dict]) -> List[str]:
    """The ``img_path`` (one or a list per sample) of a batch's samples."""
    paths = []
    samples = (data_batch or {}).get('data_samples') or []
    for sample in samples if isinstance(samples, Sequence) else [samples]:
        path = sample.metainfo.get('img_path') if hasattr(
            sample, 'metainfo') else None
        if isinstance(path, str):
            paths.append(path)
        elif isinstance(path, Sequence):
            paths.extend(map(str, path))
    return paths


@HOOKS.register_module()
class LossMonitorHook(Hook):
    """Averages each iteration's logged losses over the ranks and stops
    training on a non-finite loss.

    - The values a model's ``train_step`` returns (``loss`` and the log
      variables) are rank-local in mmengine, so the log shows rank 0's
      share of the batch. This hook all-reduces them (one collective of a
      few scalars per iteration) so that the log shows the loss of the
      global batch, as mmcv 1.x's ``_parse_losses`` did. Every rank must
      return the same keys, in the same order (the same model does).
    - A non-finite ``loss`` raises :class:`FloatingPointError` naming the
      iteration, the ranks whose loss was not finite and their batches'
      image paths: the convention of mmdet's ``CheckInvalidLossHook``,
      for every task and at every iteration. After the reduction every
      rank sees the non-finite value, so all of them stop together
      instead of leaving the others waiting in the next collective.
      (Reading the value costs no extra device sync: mmengine's message
      hub reads every logged value as a Python float anyway.)

    It runs before mmengine's ``RuntimeInfoHook`` writes the values to the
    message hub, hence the highest priority.
    """
    priority = 'HIGHEST'

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[Dict[str, Tensor]] = None) -> None:
        if not outputs:
            return
        names = [k for k, v in outputs.items() if isinstance(v, Tensor)]
        local_loss = outputs.get('loss')  # read only if the mean is bad
        world_size = get_world_size()
        if world_size > 1:
            values = torch.stack([outputs[k].detach().float() for k in names])
            all_reduce(values, op='mean')
            outputs.update(zip(names, values))
        if 'loss' not in outputs or math.isfinite(float(outputs['loss'])):
            return
        bad = [(rank, paths) for rank, (finite, paths) in enumerate(
            all_gather_object((math.isfinite(float(local_loss)),
                               image_paths(data_batch)))) if not finite]
        where = '; '.join(
            f'the batch of rank {rank}: {", ".join(paths) or "no img_path"}'
            for rank, paths in bad) or (
                'every rank\'s own loss was finite, their mean is not')
        raise FloatingPointError(
            f'the loss is {float(outputs["loss"])} at iteration '
            f'{runner.iter + 1}; {where}. Check these inputs and the '
            f'learning rate.')
