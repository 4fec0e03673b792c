# The hooks of beit3_mm.engine.hooks, which every beit3-mm config runs
# besides its library's default runtime. A config that sets its own
# custom_hooks replaces this list: add these to it.
custom_hooks = [
    dict(type='LossMonitorHook'),
    dict(type='RandomStateHook'),
    dict(type='CheckpointCheckHook'),
]
