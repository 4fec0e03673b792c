from .embedding import (NUM_VISION_EXTRA_ROWS, POS_OFFSET, VisionEmbedding,
                        resize_vision_pos_table, vision_table_grid)
from .multiway import (FeedForward, KVCache, LayerKV, Multiway,
                       MultiwayAttention, MultiwayTransformerLayer)
from .norm import LN2d
from .rel_pos import (DecomposedRelPos, decomposed_rel_pos_bias,
                      resize_rel_pos)
from .window import window_attention

__all__ = [
    'VisionEmbedding', 'resize_vision_pos_table', 'vision_table_grid',
    'POS_OFFSET', 'NUM_VISION_EXTRA_ROWS', 'Multiway', 'MultiwayAttention',
    'FeedForward', 'MultiwayTransformerLayer', 'KVCache', 'LayerKV',
    'window_attention', 'LN2d',
    'DecomposedRelPos', 'decomposed_rel_pos_bias', 'resize_rel_pos'
]
