# BEiT-3 base pretraining model (paper, sections 2.2-2.3): the multiway
# backbone with its output norm, mim_head over the tokenizer's codes and
# mlm_head over the text vocabulary (the released key names). Images: 40% of
# the patches masked block-wise, targets the codes of BEiT v2's VQ-KD
# tokenizer (a released file, frozen, outside the module tree); texts: 15%
# of the tokens; pairs: 50% of the text tokens and 40% of the patches.
# Drop path 0.1, activation checkpointing.
#
# reinit_mim_head: the released beit3_{base,large}_patch16_224.pth hold a
# mim_head trained on the codes of an unreleased tokenizer. To continue
# pretraining from them with a released BEiT v2 tokenizer, set
#   model = dict(init_cfg=dict(type='Pretrained',
#                checkpoint='checkpoints/beit3_base_patch16_224.pth'))
# and keep reinit_mim_head=True (mim_head starts anew; the rest loads
# strictly). From scratch (init_cfg=None, the paper) it changes nothing.
custom_imports = dict(imports=['beit3_mm'], allow_failed_imports=False)
vqkd_checkpoint = 'checkpoints/vqkd_encoder_base_decoder_1x768x12_clip.pth'

model = dict(
    type='BEiT3Pretrain',
    backbone=dict(
        type='BEiT3',
        arch='base',
        img_size=224,
        drop_path_rate=0.1,
        with_cp=True),
    target_generator=dict(
        type='VQKDTokenizer',
        arch='base',
        img_size=224,
        num_embed=8192,
        embed_dims=32,
        init_cfg=dict(type='Pretrained', checkpoint=vqkd_checkpoint)),
    tokenizer=dict(type='BEiT3Tokenizer', name_or_path='data/beit3.spm'),
    max_text_len=64,
    image_mask_ratio=0.4,
    text_mask_ratio=0.15,
    pair_image_mask_ratio=0.4,
    pair_text_mask_ratio=0.5,
    mask_min_num_patches=16,
    reinit_mim_head=True,
    init_cfg=None)
# A batch without images and pairs leaves the vision half out of the graph,
# one without texts and pairs the language half: DDP looks for unused
# parameters. In the recipe every rank's batch holds every source, none is
# unused, and the search costs 0.2 ms a step (base: 2700 autograd nodes).
find_unused_parameters = True
