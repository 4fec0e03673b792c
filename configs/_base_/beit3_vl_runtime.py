# The runtime of the vision-language recipes: mmpretrain's default runtime
# with the beit3-mm hooks, a log line every 50 iterations, the last two
# checkpoints and the best one (save_best: a recipe names its metric), and
# seed 42 as in the official runs.
_base_ = ['mmpretrain::_base_/default_runtime.py', './beit3_runtime.py']

default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(max_keep_ckpts=2, save_best='auto'))
randomness = dict(seed=42)
