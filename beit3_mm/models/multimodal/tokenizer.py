"""The BEiT-3 tokenizer: ``beit3.spm`` read with the XLM-R convention."""
import os.path as osp

from transformers import XLMRobertaTokenizer

from beit3_mm.registry import TOKENIZER

BEIT3_SPM_URL = ('https://github.com/addf400/files/releases/download/beit3/'
                 'beit3.spm')


@TOKENIZER.register_module()
class BEiT3Tokenizer(XLMRobertaTokenizer):
    """XLM-R tokenizer over the released ``beit3.spm`` sentencepiece model.

    ``<s>`` = 0, ``<pad>`` = 1, ``</s>`` = 2, ``<unk>`` = 3, sentencepiece
    pieces shifted by one and ``<mask>`` after them (64001 for the released
    file), as the official code's ``XLMRobertaTokenizer(beit3.spm)``.
    Built from a config with a local path, nothing is downloaded::

        tokenizer = dict(type='BEiT3Tokenizer', name_or_path='data/beit3.spm')

    Args:
        name_or_path (str): the ``.spm`` file, or a folder holding
            ``beit3.spm``.
        **kwargs: passed to :class:`transformers.XLMRobertaTokenizer`.
    """

    def __init__(self, name_or_path: str, **kwargs):
        path = name_or_path
        if osp.isdir(path):
            path = osp.join(path, 'beit3.spm')
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'BEiT-3 tokenizer file {path!r} not found: download '
                f'beit3.spm from {BEIT3_SPM_URL} (the official BEiT-3 '
                f'release) and set tokenizer.name_or_path to its path')
        try:
            super().__init__(vocab_file=path, **kwargs)
        except (RuntimeError, OSError) as err:
            raise ValueError(f'{path!r} is not a sentencepiece model (expected '
                             f'the released beit3.spm): {err}') from err
