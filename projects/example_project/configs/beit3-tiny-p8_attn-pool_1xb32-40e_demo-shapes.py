# The example project: the tiny classification demo of beit3-mm with the
# mean of the patch tokens (+ fc_norm) replaced by AttentionPoolNeck, a
# learned query attending over all the tokens. Everything else (data,
# schedule, layer decay; the neck sits at the top depth with the head)
# comes from the inherited config. Make the data with
#   python tools/misc/make_demo_data.py classification --out data/demo_cls
_base_ = [
    '../../../configs/beit3/classification/'
    'beit3-tiny-p8_1xb32-40e_demo-shapes.py'
]
# beit3_mm first: the project's modules import it.
custom_imports = dict(
    imports=['beit3_mm', 'projects.example_project.beit3_example'],
    allow_failed_imports=False)

model = dict(
    backbone=dict(out_type='raw'),  # (B, 1 + h * w, D) tokens for the neck
    # the base has neck=None: _delete_ replaces it
    neck=dict(
        _delete_=True, type='AttentionPoolNeck', in_channels=64, num_heads=4))
