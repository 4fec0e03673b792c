# BEiT-3 large pretraining: the base recipe with the large backbone.
_base_ = ['./beit3-base-p16_pretrain_64xb96-1m_mixed-224px.py']

model = dict(backbone=dict(arch='large'))
