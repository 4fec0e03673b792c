"""Where beit3_mm components register.

Every beit3_mm component registers in mmengine's *root* registries. A name
is looked up in the scope of the running config (``default_scope`` of
'mmpretrain', 'mmdet' or 'mmseg') and then in its ancestors, and all three
libraries' registries are children of the root: so ``dict(type='BEiT3')``
builds from any of them, and from a config without a default scope, with no
prefix. Configs import the package with
``custom_imports = dict(imports=['beit3_mm'], allow_failed_imports=False)``.

Registries that exist in one library only (mmpretrain's tokenizer registry)
are imported from that library where they are used.
"""
from mmengine.registry import (DATASETS, HOOKS, METRICS, MODELS,
                               OPTIM_WRAPPER_CONSTRUCTORS, TRANSFORMS)

__all__ = [
    'MODELS', 'DATASETS', 'TRANSFORMS', 'METRICS', 'HOOKS',
    'OPTIM_WRAPPER_CONSTRUCTORS'
]
