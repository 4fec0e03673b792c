"""Where beit3_mm components register.

Every registration in beit3_mm goes through this module. Each name is the
library's own registry object, re-exported; what beit3_mm registers into it:

- ``MODELS`` (mmengine): the backbones (``BEiT3``, ``BEiT3Dense``,
  ``BEiT3Adapter``), the ``SimpleFPN`` neck, the ``LN2d`` norm, the
  ``EncoderDecoderMask2Former`` segmentor, the vision-language models
  (retrieval, VQA, NLVR2, captioning, zero-shot classification) and the
  self-supervised ones (``VQKDTokenizer``, ``VQKDTrainer``,
  ``BEiT3Pretrain`` and its data preprocessor).
- ``DATASETS`` (mmengine): ``NoCapsImages``, the pretraining sources
  (``ImageTextPairs``, ``ImageTextShards``, ``PretrainTextCorpus``) and
  ``GuardedDataset``.
- ``TRANSFORMS`` (mmengine): ``PackPretrainInputs``.
- ``DATA_SAMPLERS`` (mmengine): ``MixedSourceSampler``.
- ``METRICS`` (mmengine): ``CaptionMetric``, ``NoCapsMetric``.
- ``HOOKS`` (mmengine): ``CheckpointCheckHook``, ``CodebookUsageHook``,
  ``LossMonitorHook``, ``MixedSourceResumeHook``, ``RandomStateHook``.
- ``OPTIM_WRAPPER_CONSTRUCTORS`` (mmengine):
  ``LayerDecayOptimWrapperConstructor``.
- ``OPTIM_WRAPPERS`` (mmengine): ``MixedPrecisionOptimWrapper``.
- ``OPTIMIZERS`` (mmengine): DeepSpeed's ``DeepSpeedCPUAdam``,
  ``FusedAdam`` and ``FusedLamb``, when a DeepSpeed strategy is built.
- ``STRATEGIES`` (mmengine): ``BEiT3DeepSpeedStrategy``,
  ``BEiT3FSDPStrategy``.
- ``FUNCTIONS`` (mmengine): ``multiway_layer_policy`` (FSDP auto-wrap) and
  ``is_multiway_layer`` (activation checkpointing per layer).
- ``TOKENIZER`` (mmpretrain; mmengine has none): ``BEiT3Tokenizer``.

All but ``TOKENIZER`` are mmengine's *root* registries. A name is looked up
in the scope of the running config (``default_scope`` of 'mmpretrain',
'mmdet' or 'mmseg') and then in its ancestors, and all three libraries'
registries are children of the root: so ``dict(type='BEiT3')`` builds from
any of them, and from a config without a default scope, with no prefix.
Child registries of our own (``Registry(..., parent=MODELS,
locations=[...])``, as the libraries do) would need a ``beit3_mm.`` prefix
or a ``beit3_mm`` default scope in every config, and a task config lives in
its library's scope.

Configs import the package with
``custom_imports = dict(imports=['beit3_mm'], allow_failed_imports=False)``,
which registers everything at once. Registering per library (importing
mmdet's, mmseg's or the tokenizer's dependents only for their configs) would
save little: a run imports its own library's models anyway
(``default_scope``), and after ``import mmpretrain.models`` (what a
classification run loads), importing ``beit3_mm`` takes another 0.5-0.7 s on
a 2-core CPU.
"""
from mmengine.registry import (DATA_SAMPLERS, DATASETS, FUNCTIONS, HOOKS,
                               METRICS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS,
                               OPTIM_WRAPPERS, OPTIMIZERS, STRATEGIES,
                               TRANSFORMS)
from mmpretrain.registry import TOKENIZER

__all__ = [
    'MODELS', 'DATASETS', 'TRANSFORMS', 'DATA_SAMPLERS', 'METRICS', 'HOOKS',
    'OPTIM_WRAPPER_CONSTRUCTORS', 'OPTIM_WRAPPERS', 'OPTIMIZERS',
    'STRATEGIES', 'FUNCTIONS', 'TOKENIZER'
]
