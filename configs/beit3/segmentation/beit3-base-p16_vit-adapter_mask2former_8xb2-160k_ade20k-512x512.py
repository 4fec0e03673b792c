# BEiT-3 base + ViT-Adapter + Mask2Former on ADE20K, the paper's segmentation
# setting (the authors did not release it): the shared recipe as it is, 512
# crops (slide stride 341), AdamW lr 3e-5, 160k iterations at batch 16.
_base_ = ['../../_base_/beit3-vit-adapter_mask2former_ade20k.py']
