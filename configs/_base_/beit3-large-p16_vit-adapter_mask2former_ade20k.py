# The ViT-Adapter + Mask2Former recipe with BEiT-3 large and ViT-Adapter's
# BEiT-L / BEiT v2-L model (mask2former_beit*_adapter_large_896_80k_ade20k):
# interaction stages [[0, 5], [6, 11], [12, 17], [18, 23]], 16 deformable
# heads, drop path 0.3, activation checkpointing, and a 1024-wide Mask2Former
# head (32 attention heads, FFN 4x) with 200 queries.
_base_ = ['./beit3-vit-adapter_mask2former_ade20k.py']

width = 1024
model = dict(
    backbone=dict(
        arch='large',
        drop_path_rate=0.3,
        with_cp=True,
        interaction_indexes=[[0, 5], [6, 11], [12, 17], [18, 23]],
        deform_num_heads=16,
        init_cfg=dict(checkpoint='checkpoints/beit3_large_patch16_224.pth')),
    decode_head=dict(
        in_channels=[width] * 4,
        feat_channels=width,
        out_channels=width,
        num_queries=200,
        pixel_decoder=dict(
            encoder=dict(
                layer_cfg=dict(
                    self_attn_cfg=dict(embed_dims=width, num_heads=32),
                    ffn_cfg=dict(
                        embed_dims=width, feedforward_channels=4 * width))),
            positional_encoding=dict(num_feats=width // 2)),
        positional_encoding=dict(num_feats=width // 2),
        transformer_decoder=dict(
            layer_cfg=dict(
                self_attn_cfg=dict(embed_dims=width, num_heads=32),
                cross_attn_cfg=dict(embed_dims=width, num_heads=32),
                ffn_cfg=dict(
                    embed_dims=width, feedforward_channels=4 * width)))))
