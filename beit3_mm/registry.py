"""Where beit3_mm components register.

Every beit3_mm component registers in mmengine's *root* registries. A name
is looked up in the scope of the running config (``default_scope`` of
'mmpretrain', 'mmdet' or 'mmseg') and then in its ancestors, and all three
libraries' registries are children of the root: so ``dict(type='BEiT3')``
builds from any of them, and from a config without a default scope, with no
prefix. Child registries of our own (``Registry(..., parent=MODELS,
locations=[...])``, as the libraries do) would need a ``beit3_mm.`` prefix
or a ``beit3_mm`` default scope in every config, and a task config lives in
its library's scope.

Configs import the package with
``custom_imports = dict(imports=['beit3_mm'], allow_failed_imports=False)``,
which registers everything at once: the backbones, necks, segmentor,
vision-language and self-supervised models, the datasets of
:mod:`beit3_mm.datasets`, the metrics of :mod:`beit3_mm.evaluation`, and the
hooks and optimizer constructor of :mod:`beit3_mm.engine`. Registering per library (importing mmdet's, mmseg's
or the tokenizer's dependents only for their configs) would save little: a
run imports its own library's models anyway (``default_scope``), and after
``import mmpretrain.models`` (what a classification run loads), importing
``beit3_mm`` takes another 0.5-0.7 s on a 2-core CPU.

Registries that exist in one library only (mmpretrain's tokenizer registry)
are imported from that library where they are used.
"""
from mmengine.registry import (DATA_SAMPLERS, DATASETS, FUNCTIONS, HOOKS,
                               METRICS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS,
                               TRANSFORMS)

__all__ = [
    'MODELS', 'DATASETS', 'TRANSFORMS', 'DATA_SAMPLERS', 'FUNCTIONS',
    'METRICS', 'HOOKS', 'OPTIM_WRAPPER_CONSTRUCTORS'
]
