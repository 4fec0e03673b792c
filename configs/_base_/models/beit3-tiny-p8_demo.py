# The tiny BEiT-3 of the CPU demos (trained from scratch). A demo leaf lists
# this file after its recipe and puts the arch over the recipe's backbone:
#   backbone=dict(arch=dict(_delete_=True, **_base_.tiny_arch), ...)
# (mmengine forbids keys shared among bases, so this cannot set `model`: the
# helper variable `tiny_arch` stays in the demo configs as built).
tiny_arch = dict(
    embed_dims=64, num_layers=4, num_heads=4, feedforward_channels=128,
    patch_size=8)
