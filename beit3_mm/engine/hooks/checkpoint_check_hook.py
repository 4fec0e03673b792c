"""Refuse another task's checkpoint where the model is used as it loads."""
import re
from collections import defaultdict
from typing import Dict, List

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from beit3_mm.models.utils import CheckpointMismatchError
from beit3_mm.models.utils.weight_loading import top_level_names
from beit3_mm.registry import HOOKS
from beit3_mm.utils import last_checkpoint_read


@HOOKS.register_module()
class CheckpointCheckHook(Hook):
    """Stop testing or resuming from a checkpoint that lacks whole modules
    of the model.

    mmengine loads checkpoints non-strictly: another task's checkpoint
    fills the backbone (which :class:`~beit3_mm.models.BEiT3` checks) and
    leaves the heads at their init, so a test reports near-zero metrics
    and a resumed run trains fresh heads, both without an error. When the
    runner tests, validates or resumes, this hook raises if a top-level
    module of the model with weights (``neck``, ``roi_head``, ``head``,
    ``pooler``, ...) has none of its keys in the checkpoint while another
    module has some. A training run's ``load_from`` may start from another
    task's checkpoint: its new heads are only logged.
    """
    priority = 'VERY_HIGH'  # before other hooks use the checkpoint

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        training = not (isinstance(runner._train_loop, dict)
                        or runner._train_loop is None)
        if training and not runner._resume:
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        # what Runner.load_checkpoint loads: 'state_dict', 'module.' off
        state = checkpoint.get('state_dict', checkpoint)
        keys = {re.sub(r'^module\.', '', k) for k in state}
        modules: Dict[str, List[str]] = defaultdict(list)
        for k in model.state_dict():
            modules[k.split('.')[0]].append(k)
        absent = [
            name for name, own in modules.items()
            if not any(k in keys for k in own)
        ]
        if not absent or len(absent) == len(modules):
            # all there, or nothing: the backbone says what the file is
            return
        read = last_checkpoint_read()
        source = read.path if read is not None else 'the checkpoint'
        action = 'resume' if runner._resume else 'test'
        raise CheckpointMismatchError(
            f'{source} looks like a checkpoint of another task (its '
            f'modules: {top_level_names(list(keys))}; this model also has '
            f'{", ".join(absent)}): to {action}, give a checkpoint trained '
            f'with this config; to fine-tune from it, start a training run '
            f'with load_from (or the backbone\'s init_cfg)')
