"""Offline COCO caption scores: BLEU-1..4, METEOR, ROUGE-L, CIDEr(-D).

``pycocoevalcap``'s ``COCOEvalCap.evaluate()`` (what mmpretrain's and mmdet's
caption metrics call) always runs SPICE, which downloads CoreNLP on first use
and fails on Java >= 9. :class:`CaptionMetric` calls the same scorers itself,
on the same PTB-tokenised captions, and runs SPICE only when asked.

The PTB tokenizer and METEOR run on Java. pycocoevalcap's ``PTBTokenizer``
writes its temp file inside the installed package; here the same command
reads a file in a temp folder, so read-only installs work. Without Java a
pure-Python tokenisation close to the PTB tokenizer's stands in and METEOR
is skipped (one log line says so).
"""
import logging
import os.path as osp
import re
import shutil
import subprocess
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import mmengine
from mmengine.fileio import exists
from mmengine.logging import print_log
from mmpretrain.evaluation.metrics.caption import COCOCaption
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer import ptbtokenizer
from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS

from beit3_mm.registry import METRICS

PTB_JAR = osp.join(
    osp.dirname(osp.abspath(ptbtokenizer.__file__)),
    ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR)
BLEU_KEYS = ['Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4']

# The PTB tokenizer's rules that matter for captions, in order; tokens in
# PUNCTUATIONS are dropped afterwards, so quotes can simply go.
_PTB_RULES = [
    (r'"', ' '),  # becomes `` or '', both dropped
    (r'(?<!\d)[,:]|[,:](?!\d)', r' \g<0> '),  # not in 1,000 or 3:30
    (r';|\.\.\.|[?!]+|[$%]|#(?=\d)|[(){}\[\]]', r' \g<0> '),
    (r"(?<=\w)(n't|'s|'re|'ve|'ll|'d|'m)\b", r' \1'),
    (r'\b(can)(not)\b|\b(gon|wan)(na)\b|\b(got)(ta)\b|\b(gim|lem)(me)\b',
     lambda m: ' '.join(g for g in m.groups() if g)),
    (r'(?<=\w)/(?=\s|$)', ' / '),  # w/ food
]
_BRACKETS = {
    '(': '-lrb-', ')': '-rrb-', '[': '-lsb-', ']': '-rsb-', '{': '-lcb-',
    '}': '-rcb-'
}
_CONTRACTIONS = {"n't", "'s", "'re", "'ve", "'ll", "'d", "'m"}
_ABBREVIATIONS = {
    'mr', 'mrs', 'ms', 'dr', 'st', 'jr', 'sr', 'vs', 'etc', 'inc', 'co',
    'ave', 'mt', 'ft', 'lt', 'col', 'gen', 'prof', 'rev'
}


def java_available() -> bool:
    """Whether a ``java`` executable is on the PATH."""
    return shutil.which('java') is not None


def _ptb_token(token: str) -> List[str]:
    """Map brackets and strip quotes, hyphens and periods off one token."""
    if token in _BRACKETS:
        return [_BRACKETS[token]]
    if token.rstrip('.') in _CONTRACTIONS | {"'n'"}:
        return [token.rstrip('.')]
    token = re.sub(r"^(?:'(?!\d)|-|\.(?!\d))+|['-]+$", '', token)
    stem = token.rstrip('.')
    if stem != token and (stem in _ABBREVIATIONS
                          or re.fullmatch(r'([a-z]\.)+[a-z]', stem)):
        return [token]
    return [stem] if stem else []


def python_ptb_tokenize(sentences: Sequence[str]) -> List[str]:
    """Lower-case, PTB-split and drop punctuation without Java.

    A close stand-in for :func:`ptb_tokenize`: the same result on ordinary
    captions, not on every rare construct of the Stanford lexer.
    """
    lines = []
    for sentence in sentences:
        line = sentence.lower()
        for pattern, repl in _PTB_RULES:
            line = re.sub(pattern, repl, line)
        tokens = [t for raw in line.split() for t in _ptb_token(raw)]
        lines.append(' '.join(t for t in tokens if t not in PUNCTUATIONS))
    return lines


def ptb_tokenize(sentences: Sequence[str]) -> List[str]:
    """pycocoevalcap's ``PTBTokenizer`` (Stanford CoreNLP 3.4.1), with its
    temp file in a temp folder instead of the package folder."""
    with tempfile.TemporaryDirectory() as tmp_dir:
        path = osp.join(tmp_dir, 'captions.txt')
        with open(path, 'wb') as f:
            f.write('\n'.join(re.sub(r'[\r\n]', ' ', s)
                              for s in sentences).encode())
        cmd = [
            'java', '-cp', PTB_JAR, 'edu.stanford.nlp.process.PTBTokenizer',
            '-preserveLines', '-lowerCase', path
        ]
        proc = subprocess.run(cmd, capture_output=True)
    lines = proc.stdout.decode().split('\n')
    if proc.returncode != 0 or len(lines) < len(sentences):
        raise RuntimeError(f'the PTB tokenizer failed ({" ".join(cmd)}): '
                           f'{proc.stderr.decode().strip()}')
    return [
        ' '.join(w for w in line.rstrip().split(' ') if w not in PUNCTUATIONS)
        for line in lines[:len(sentences)]
    ]


def tokenize_captions(
    gts: Dict[int, List[str]], preds: Dict[int, str], use_java: bool
) -> Tuple[Dict[int, List[str]], Dict[int, List[str]]]:
    """Tokenise ground truths and predictions as ``COCOEvalCap`` does."""
    sentences = [c for caps in gts.values() for c in caps]
    sentences += list(preds.values())
    tokenize = ptb_tokenize if use_java else python_ptb_tokenize
    lines = iter(tokenize(sentences))
    gts_tok = {k: [next(lines) for _ in caps] for k, caps in gts.items()}
    res_tok = {k: [next(lines)] for k in preds}
    return gts_tok, res_tok


def score_captions(gts: Dict[int, List[str]],
                   res: Dict[int, List[str]],
                   metrics: Sequence[str] = ('Bleu', 'METEOR', 'ROUGE_L',
                                             'CIDEr')) -> Dict[str, float]:
    """Run pycocoevalcap's scorers named in ``metrics`` (of 'Bleu',
    'METEOR', 'ROUGE_L', 'CIDEr', 'SPICE') on tokenised captions, the images
    in the same order in ``gts`` and ``res``; keys as in ``COCOEvalCap``."""
    scores = {}
    if 'Bleu' in metrics:
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        scores.update(zip(BLEU_KEYS, bleu))
    if 'METEOR' in metrics:
        scores['METEOR'], _ = Meteor().compute_score(gts, res)
    if 'ROUGE_L' in metrics:
        scores['ROUGE_L'], _ = Rouge().compute_score(gts, res)
    if 'CIDEr' in metrics:
        scores['CIDEr'], _ = Cider().compute_score(gts, res)
    if 'SPICE' in metrics:
        from pycocoevalcap.spice.spice import Spice
        scores['SPICE'], _ = Spice().compute_score(gts, res)
    return {k: float(v) for k, v in scores.items()}


@METRICS.register_module()
class CaptionMetric(COCOCaption):
    """COCO caption scores computed offline (no SPICE unless asked).

    The same numbers as ``COCOEvalCap.evaluate()`` less SPICE: BLEU-1..4
    (``Bleu_1``..``Bleu_4``), ``METEOR``, ``ROUGE_L`` and ``CIDEr`` (CIDEr-D),
    as fractions (CIDEr 1.336 is the "133.6" of papers). Predictions
    (``pred_caption``, ``image_id``) are de-duplicated by image id and scored
    against the ground-truth captions of the predicted images; empty
    predictions are counted in a warning.

    Args:
        ann_file (str, optional): COCO-format caption ground truth
            (``images`` and ``annotations`` with ``image_id`` and
            ``caption``), e.g. ``coco_karpathy_val_gt.json``. Not needed
            with ``format_only``.
        with_spice (bool): Also compute SPICE (needs Java 8 and CoreNLP 3.6.0,
            which SPICE downloads on first use). Defaults to False.
        outfile_prefix (str, optional): Write the predictions to
            ``{outfile_prefix}.caption.json`` in the COCO / EvalAI format
            (``[{"image_id": int, "caption": str}]``). Defaults to None.
        format_only (bool): Only write the result file, e.g. for a test
            server. Defaults to False.
        collect_device (str): Device to collect results across ranks on,
            'cpu' or 'gpu'. Defaults to 'cpu'.
        prefix (str, optional): Prefix of the metric names. Defaults to
            'coco-caption'.
    """
    default_prefix = 'coco-caption'

    def __init__(self,
                 ann_file: Optional[str] = None,
                 with_spice: bool = False,
                 outfile_prefix: Optional[str] = None,
                 format_only: bool = False,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super(COCOCaption, self).__init__(
            collect_device=collect_device, prefix=prefix)
        if format_only and outfile_prefix is None:
            raise ValueError(f'{type(self).__name__}: format_only=True needs '
                             'outfile_prefix, where the result file goes')
        if not format_only and (ann_file is None or not exists(ann_file)):
            raise FileNotFoundError(
                f'{type(self).__name__}: caption ground truth '
                f'ann_file={ann_file!r} not found; make it (COCO format, '
                'e.g. tools/dataset_converters/coco_karpathy.py) or set '
                'format_only=True with outfile_prefix to only write results')
        self.ann_file = ann_file
        self.with_spice = with_spice
        self.outfile_prefix = outfile_prefix
        self.format_only = format_only

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Score the de-duplicated predictions, or only write them."""
        preds = {}
        for result in results:
            preds.setdefault(result['image_id'], result['caption'])
        missing = [k for k, v in preds.items() if not isinstance(v, str)]
        if missing:
            raise ValueError(
                f'{type(self).__name__}: the data sample of image '
                f'{missing[0]!r} has no pred_caption string: evaluate a '
                'captioning model (BEiT3Caption sets pred_caption in predict)')
        empty = [k for k, v in preds.items() if not v.strip()]
        if empty:
            print_log(
                f'{type(self).__name__}: {len(empty)} of {len(preds)} '
                f'predicted captions are empty (e.g. image {empty[0]!r}) and '
                'score 0: the model ends at </s> first (untrained?) or '
                'predicts words without text',
                logger='current',
                level=logging.WARNING)
        if self.outfile_prefix is not None:
            out_file = f'{self.outfile_prefix}.caption.json'
            mmengine.dump([
                dict(image_id=k, caption=v) for k, v in preds.items()
            ], out_file)
            print_log(f'{len(preds)} captions saved to {out_file}',
                      logger='current')
        if self.format_only:
            return {}
        return self.score(preds, mmengine.load(self.ann_file))

    def score(self, preds: Dict[int, str], gt: dict) -> Dict[str, float]:
        """Score predictions against a loaded COCO-format ground truth."""
        gts = self.gt_captions(gt, preds)
        use_java = java_available()
        if not use_java:
            if self.with_spice:
                raise RuntimeError(f'{type(self).__name__}: with_spice=True '
                                   'needs Java; install a JRE')
            print_log(
                'Java not found: captions are tokenised in Python (close to '
                'the PTB tokenizer) and METEOR is skipped; install a JRE '
                '(apt-get install default-jre-headless) for the standard '
                'scores',
                logger='current',
                level=logging.WARNING)
        gts, res = tokenize_captions(gts, {k: preds[k] for k in gts}, use_java)
        metrics = ['Bleu', 'METEOR', 'ROUGE_L', 'CIDEr', 'SPICE']
        if not use_java:
            metrics.remove('METEOR')
        if not self.with_spice:
            metrics.remove('SPICE')
        return self.score_tokenized(gts, res, gt, metrics)

    def score_tokenized(self, gts: Dict[int, List[str]],
                        res: Dict[int, List[str]], gt: dict,
                        metrics: List[str]) -> Dict[str, float]:
        """Scores of tokenised captions (``gt``: the loaded ann_file)."""
        return score_captions(gts, res, metrics)

    def gt_captions(self, gt: dict,
                    preds: Dict[int, str]) -> Dict[int, List[str]]:
        """Ground-truth captions of the predicted images, in the order of
        the ground truth's images (as ``COCOEvalCap``)."""
        captions: Dict[int, List[str]] = {
            img['id']: []
            for img in gt.get('images', [])
        }
        for ann in gt['annotations']:
            captions.setdefault(ann['image_id'], []).append(ann['caption'])
        unknown = [k for k in preds if not captions.get(k)]
        if unknown:
            raise ValueError(
                f'{type(self).__name__}: {len(unknown)} predicted image ids '
                f'(e.g. {unknown[0]!r}) have no caption in {self.ann_file}; '
                'evaluate against the ground truth of the same split')
        num_gt = sum(1 for v in captions.values() if v)
        if len(preds) < num_gt:
            print_log(
                f'{type(self).__name__}: scoring {len(preds)} of the '
                f'{num_gt} captioned images of {self.ann_file}',
                logger='current',
                level=logging.WARNING)
        return {k: v for k, v in captions.items() if k in preds}
