"""BEiT-3 for image captioning (COCO Captions, NoCaps)."""
import math
import random
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.logging import MessageHub
from mmpretrain.structures import DataSample

from beit3_mm.registry import MODELS
from beit3_mm.utils import read_checkpoint
from ..layers import KVCache
from ..utils import (corrupt_tokens, model_state_dict, released_kind,
                     split_backbone)
from .base import BEiT3VLModel

Tensor = torch.Tensor


def caption_loss(logits: Tensor, labels: Tensor, label_smoothing: float,
                 drop_worst_ratio: float = 0.) -> Tensor:
    """The official ``BertCaptioningLoss``: KL divergence from the
    predicted distribution to a label-smoothed one-hot target, mean over
    tokens, optionally over the ``int(N * (1 - drop_worst_ratio))``
    smallest token losses only.

    The target is ``1 - eps`` at the label and ``eps / (V - 1)`` elsewhere;
    the loss per token is ``sum_c t_c * (log t_c - log p_c)``, computed in
    closed form without the (N, V) target.

    Args:
        logits: (N, V) at the masked positions.
        labels: (N,) the original token ids.
        label_smoothing: eps.
        drop_worst_ratio: share of the largest token losses left out.
    """
    eps = label_smoothing
    num_classes = logits.shape[1]
    log_p = logits.float().log_softmax(dim=-1)
    log_p_label = log_p.gather(1, labels[:, None]).squeeze(1)
    off = eps / (num_classes - 1)
    # sum_c t_c log t_c: a constant (0 log 0 = 0)
    neg_entropy = sum(t * math.log(t) * n
                      for t, n in ((1 - eps, 1), (off, num_classes - 1))
                      if t > 0)
    cross = (1 - eps) * log_p_label + off * (log_p.sum(1) - log_p_label)
    loss = neg_entropy - cross
    if drop_worst_ratio > 0:
        keep = max(1, int(loss.shape[0] * (1 - drop_worst_ratio)))
        loss = loss.topk(keep, largest=False).values
    return loss.mean()


class _BestHypothesis:
    """The best finished caption of one image, as the official
    ``BeamHypotheses`` with one hypothesis kept: score = sum of
    log-probabilities / (words + 2) ** length_penalty."""

    def __init__(self, max_len: int, length_penalty: float):
        self.length_penalty = length_penalty
        # the official bound divides by (max_len - 1) ** penalty
        self.bound = (max_len - 1)**length_penalty
        self.score: Optional[float] = None
        self.words: Optional[List[int]] = None

    def add(self, words: List[int], sum_logprobs: float) -> None:
        # <s> and the final slot count in the length, as officially
        score = sum_logprobs / (len(words) + 2)**self.length_penalty
        if self.score is None or score > self.score:
            self.score, self.words = score, words

    def is_done(self, best_sum_logprobs: float) -> bool:
        """No open beam (best sum ``best_sum_logprobs``) can do better."""
        return (self.score is not None
                and self.score >= best_sum_logprobs / self.bound)


@MODELS.register_module()
class BEiT3Caption(BEiT3VLModel):
    """BEiT-3 image captioning: seq2seq (UniLM) fine-tuning of the fusion
    encoder and beam search with a key/value cache (the official
    ``BEiT3ForCaptioning`` and ``CaptioningHandler``).

    Image tokens attend to the image; caption tokens attend to the image and
    to the caption up to and including themselves
    (:meth:`BEiT3.seq2seq_mask`); ``mlm_head`` predicts the tokens at the
    masked positions.

    Training: every step, each caption ``<s> tokens </s>`` (n tokens
    before padding to ``max_text_len``) gets
    ``clip(int(n * mask_prob + 0.5), 1, n - 1)`` positions drawn from
    ``1..n-1`` (``</s>`` included, ``<s>`` never); each becomes ``<mask>``
    (80%), a random id from ``[3, tokenizer.vocab_size - 1]`` (10%) or
    stays (10%). The loss is :func:`caption_loss` over all of them, keeping
    only the best ``1 - drop_worst_ratio`` token losses once the global
    step (mmengine's ``MessageHub`` ``iter``) exceeds ``drop_worst_after``.
    ``gt_caption`` may be a string or a list of strings, of which one is
    drawn at random each time (mmpretrain's ``COCOCaption`` gives one
    caption per sample for training).

    Decoding (:meth:`generate`): beam search as the official code, also for
    ``num_beams=1``. The first step encodes each image once with
    ``[<s>, <mask>]``; every later step feeds ``[previous word, <mask>]``
    to the cache only, reads the distribution at the ``<mask>`` slot, and
    the cache follows the surviving beams. The top ``3 * num_beams``
    candidates of each image are visited in order: ``</s>`` closes a
    hypothesis, other words continue up to ``num_beams`` beams. A caption
    holds at most ``max_len - 3`` words; at that limit every candidate
    closes its beam (scored with that word's log-probability, the word not
    kept). An image is done when its best hypothesis cannot be beaten (see
    ``BeamHypotheses.is_done``). ``pred_caption`` is the best hypothesis,
    detokenised without special tokens.

    Args:
        backbone (dict): a ``BEiT3`` config with ``output_norm=True`` (the
            released captioning models keep the output norm).
        mask_prob (float): share of the caption tokens to predict. Defaults
            to 0.6 (the official default; the official docs use 0.7).
        label_smoothing (float): eps of the loss. Defaults to 0.1.
        drop_worst_ratio (float): share of the largest token losses left
            out after ``drop_worst_after`` steps; 0 disables. Defaults to
            0.2.
        drop_worst_after (int): global step after which the worst losses
            are dropped. Defaults to 12000.
        num_beams (int): beams of the search. Defaults to 3.
        length_penalty (float): exponent of the length normalisation.
            Defaults to 0.6.
        max_len (int): the official ``num_max_bpe_tokens`` of decoding
            (a caption holds at most ``max_len - 3`` words, so at least
            4); at most the backbone's ``num_text_positions - 1``. Defaults
            to 64.
        use_cache (bool): decode with the key/value cache; False re-runs
            the full sequence at every step (same tokens, slower). Defaults
            to True.
        max_text_len (int): training captions are padded (truncated) to
            this length. Defaults to 32.
        **kwargs: see :class:`BEiT3VLModel` (``tokenizer``,
            ``data_preprocessor``, ``init_cfg``).
    """
    TOPN_PER_BEAM = 3
    # released files whose backbone was fine-tuned for another task
    OTHER_TASKS = ('retrieval', 'in1k', 'vqa', 'nlvr2')

    def __init__(self,
                 backbone: dict,
                 mask_prob: float = 0.6,
                 label_smoothing: float = 0.1,
                 drop_worst_ratio: float = 0.2,
                 drop_worst_after: int = 12000,
                 num_beams: int = 3,
                 length_penalty: float = 0.6,
                 max_len: int = 64,
                 use_cache: bool = True,
                 max_text_len: int = 32,
                 **kwargs):
        super().__init__(backbone=backbone, max_text_len=max_text_len,
                         **kwargs)
        if not self.backbone.output_norm:
            raise ValueError('BEiT3Caption needs a backbone with '
                             'output_norm=True (the released captioning '
                             'models keep the output norm): set '
                             'model.backbone.output_norm=True')
        if self.backbone.text_embed is None:
            raise ValueError('BEiT3Caption needs the language experts: set '
                             'model.backbone.with_language=True')
        if not 0 < mask_prob <= 1:
            raise ValueError(f'mask_prob={mask_prob} must be in (0, 1]')
        if not 0 <= drop_worst_ratio < 1:
            raise ValueError(f'drop_worst_ratio={drop_worst_ratio} must be '
                             f'in [0, 1)')
        self._check_decoding(num_beams, max_len)
        self.mask_prob = mask_prob
        self.label_smoothing = label_smoothing
        self.drop_worst_ratio = drop_worst_ratio
        self.drop_worst_after = drop_worst_after
        self.num_beams = num_beams
        self.length_penalty = length_penalty
        self.max_len = max_len
        self.use_cache = use_cache
        D = self.backbone.embed_dims
        self.mlm_head = nn.Linear(D, self.backbone.text_embed.num_embeddings)

    def _check_decoding(self, num_beams: int, max_len: int) -> None:
        if num_beams < 1:
            raise ValueError(f'num_beams={num_beams}: beam search needs at '
                             f'least 1 beam (1 for greedy)')
        if max_len < 4:
            # the official search feeds <s>, the words and <mask>, fewer
            # than max_len tokens, and drops the word of its last step
            raise ValueError(
                f'max_len={max_len} leaves no room for a word (the official '
                f'search keeps at most max_len - 3 words), so every caption '
                f'would be empty: set max_len >= 4 (64 for COCO)')
        # the last step feeds max_len - 1 text tokens, at table rows
        # 2..max_len; checked here rather than after a training epoch
        rows = self.backbone.encoder.embed_positions.B.num_embeddings
        if max_len > rows - 1:
            raise ValueError(
                f'max_len={max_len} needs {max_len + 1} text positions and '
                f'the backbone has num_text_positions={rows}: set max_len <= '
                f'{rows - 1} or num_text_positions >= {max_len + 1}')

    def init_weights(self) -> None:
        """As :class:`BEiT3VLModel`, refusing a released file of another
        task (its backbone was tuned for that task and ``mlm_head`` would
        stay random)."""
        if self.pretrained is not None:
            state = model_state_dict(
                read_checkpoint(self.pretrained, mmap=True), self.pretrained)
            kind = released_kind(split_backbone(state)[1])
            if kind in self.OTHER_TASKS:
                raise ValueError(
                    f'{self.pretrained} is a {kind} model; BEiT3Caption '
                    f'starts from a pretraining file (e.g. '
                    f'beit3_base_patch16_224.pth) or a captioning one '
                    f'(e.g. beit3_base_patch16_480_coco_captioning.pth): '
                    f'set init_cfg.checkpoint to one of those')
        super().init_weights()

    # ------------------------------------------------------------- forward
    def forward_logits(self, images: Tensor, text_ids: Tensor,
                       padding_mask: Tensor,
                       masked_pos: Optional[Tensor] = None) -> Tensor:
        """Teacher-forced logits under the seq2seq mask.

        Args:
            images: (B, C, H, W).
            text_ids: (B, M) the (corrupted) caption ids.
            padding_mask: (B, M), 1 at padding.
            masked_pos: (B, M) bool, the positions to predict; None for all.

        Returns:
            (N, V) logits at the ``N`` masked positions (row-major), or
            (B, M, V) without ``masked_pos``.
        """
        num_vision = 1 + math.prod(self.backbone.patch_resolution)
        mask = self.backbone.seq2seq_mask(num_vision, text_ids.shape[1],
                                          text_ids.device)
        x = self.backbone.encode(
            images=images, text_ids=text_ids, text_padding_mask=padding_mask,
            attn_mask=mask)[:, num_vision:]
        if masked_pos is not None:
            x = x[masked_pos.bool()]
        return self.mlm_head(x)

    def extract_feat(self, images: Tensor,
                     data_samples: Optional[List[DataSample]] = None
                     ) -> Dict[str, Tensor]:
        """``image_feats`` (B, 1 + h * w, D): the image tokens, which the
        seq2seq mask keeps independent of any caption."""
        return dict(image_feats=self.backbone.encode(images=images))

    # ------------------------------------------------------------ training
    def _special_id(self, name: str) -> int:
        token_id = getattr(self.tokenizer, f'{name}_token_id', None)
        if token_id is None:
            raise ValueError(f'BEiT3Caption needs a tokenizer with a {name} '
                             f'token (BEiT3Tokenizer has <s>, </s>, <pad> '
                             f'and <mask>)')
        return token_id

    def _captions(self, data_samples: List[DataSample]) -> List[str]:
        captions = []
        for i, sample in enumerate(data_samples):
            caption = sample.get('gt_caption')
            if caption is None:
                raise KeyError(
                    'BEiT3Caption.loss needs "gt_caption" in the data '
                    'samples: add it to PackInputs.algorithm_keys of the '
                    'train pipeline')
            if not isinstance(caption, str):
                caption = random.choice(list(caption)) if caption else ''
            if not caption.strip():
                raise ValueError(
                    f'sample {i} of the batch has an empty gt_caption '
                    f'(image_id={sample.get("image_id")}): remove it from '
                    f'the annotations')
            captions.append(caption)
        return captions

    def corrupt(self, text_ids: Tensor,
                padding_mask: Tensor) -> Tuple[Tensor, Tensor]:
        """The official masking of ``CaptioningDataset``, drawn anew at each
        call: :func:`corrupt_tokens` of ``clip(int(n * mask_prob + 0.5), 1,
        n - 1)`` of the positions ``1..n-1`` of each caption (``n`` tokens
        with ``<s>`` and ``</s>``), random ids from
        ``[3, tokenizer.vocab_size - 1]``.

        Args:
            text_ids: (B, M) ``<s> tokens </s>`` and padding.
            padding_mask: (B, M), 1 at padding.

        Returns:
            The corrupted ids (B, M) and the chosen positions (B, M) bool.
        """
        tokens = padding_mask == 0
        n = tokens.sum(1)
        short = (n < 3).nonzero().flatten().tolist()
        if short:
            raise ValueError(
                f'captions {short} of the batch have no token between <s> '
                f'and </s>: remove them from the annotations')
        # float64, as the official Python arithmetic
        counts = torch.minimum(
            (n.double() * self.mask_prob + 0.5).long().clamp(min=1), n - 1)
        eligible = tokens.clone()
        eligible[:, 0] = False  # never <s>
        return corrupt_tokens(text_ids, eligible, counts,
                              self._special_id('mask'),
                              (3, self.tokenizer.vocab_size - 1))

    def loss(self, images: Tensor,
             data_samples: List[DataSample]) -> Dict[str, Tensor]:
        """``loss`` (official :func:`caption_loss`) and ``acc`` (masked
        token accuracy, logged only)."""
        text_ids, padding_mask = self.tokenize(self._captions(data_samples))
        masked_ids, masked_pos = self.corrupt(text_ids, padding_mask)
        logits = self.forward_logits(images, masked_ids, padding_mask,
                                     masked_pos)
        labels = text_ids[masked_pos]
        step = MessageHub.get_current_instance().get_info('iter', 0)
        drop = (self.drop_worst_ratio
                if step > self.drop_worst_after else 0.)
        loss = caption_loss(logits, labels, self.label_smoothing, drop)
        acc = (logits.detach().argmax(-1) == labels).float().mean()
        return dict(loss=loss, acc=acc)

    # ------------------------------------------------------------ decoding
    def _mask_logits(self, images: Tensor, rows: Tensor, words: Tensor,
                     cache: Optional[KVCache]) -> Tensor:
        """Logits (R, V) at the ``<mask>`` slot after ``<s> + words``
        ((R, c - 2)) of the images ``images[rows]``: from the cache (which
        then holds ``words`` too), else from the full sequence; -inf for
        the ids the tokenizer does not have."""
        R = words.shape[0]
        mask = words.new_full((R, 1), self._special_id('mask'))
        bos = words.new_full((R, 1), self._special_id('bos'))
        if cache is None:
            ids = torch.cat((bos, words, mask), dim=1)
            num_vision = 1 + math.prod(self.backbone.patch_resolution)
            x = self.backbone.encode(
                images=images[rows], text_ids=ids,
                attn_mask=self.backbone.seq2seq_mask(
                    num_vision, ids.shape[1], ids.device))
        elif not len(cache):
            x = self.backbone.encode(
                images=images[rows], text_ids=torch.cat((bos, mask), dim=1),
                cache=cache)
        else:
            # text positions continue the cache: the last word at index
            # c - 2, the <mask> at c - 1
            x = self.backbone.encode(
                text_ids=torch.cat((words[:, -1:], mask), dim=1),
                cache=cache)
        logits = self.mlm_head(x[:, -1])
        # rows past the tokenizer's ids (64002-64009 of the released head)
        # could be chosen by an untrained model and not detokenised
        logits[:, len(self.tokenizer):] = -math.inf
        return logits

    @torch.no_grad()
    def generate(self,
                 images: Tensor,
                 num_beams: Optional[int] = None,
                 max_len: Optional[int] = None,
                 use_cache: Optional[bool] = None
                 ) -> Tuple[List[List[int]], List[float]]:
        """Beam search of the official ``CaptioningHandler.eval_batch``.

        Args:
            images: (B, C, H, W).
            num_beams, max_len, use_cache: default to the model's.

        Returns:
            The word ids of each image's best caption (no ``<s>``, no
            ``</s>``) and its score (sum of log-probabilities /
            (words + 2) ** length_penalty).
        """
        K = self.num_beams if num_beams is None else num_beams
        max_len = self.max_len if max_len is None else max_len
        use_cache = self.use_cache if use_cache is None else use_cache
        self._check_decoding(K, max_len)
        eos = self._special_id('eos')
        B = images.shape[0]
        device = images.device
        hyps = [_BestHypothesis(max_len, self.length_penalty)
                for _ in range(B)]
        cache = KVCache(self.backbone.num_layers) if use_cache else None
        alive = list(range(B))  # images still searched, K rows each
        # first step: one row per image, expanded to the beams afterwards
        rows = torch.arange(B, device=device)
        words = torch.zeros(B, 0, dtype=torch.long, device=device)
        beam_scores = torch.zeros(B, K, device=device)
        beam_scores[:, 1:] = -1e9
        for cur_len in range(2, max_len):
            logits = self._mask_logits(images, rows, words, cache)
            log_p = logits.float().log_softmax(dim=-1)
            if cur_len == 2:
                log_p = log_p.repeat_interleave(K, dim=0)
                rows = rows.repeat_interleave(K)
                words = words.repeat_interleave(K, dim=0)
                if cache is not None:
                    cache.reorder(torch.arange(B, device=device)
                                  .repeat_interleave(K))
            V = log_p.shape[1]
            scores = (log_p + beam_scores.view(-1, 1)).view(len(alive), -1)
            top_scores, top_ids = scores.topk(
                self.TOPN_PER_BEAM * K, dim=1, largest=True, sorted=True)
            last_step = cur_len + 1 == max_len
            next_alive, next_beams = [], []
            for i, image in enumerate(alive):
                cand_scores = top_scores[i].tolist()
                if hyps[image].is_done(cand_scores[0]):
                    continue
                beams = []
                for score, idx in zip(cand_scores, top_ids[i].tolist()):
                    row, word = i * K + idx // V, idx % V
                    if word == eos or last_step:
                        hyps[image].add(words[row].tolist(), score)
                    else:
                        beams.append((score, word, row))
                    if len(beams) == K:
                        break
                if not last_step:
                    next_alive.append(image)
                    next_beams += beams
            if not next_alive:
                break
            alive = next_alive
            beam_scores = torch.tensor([b[0] for b in next_beams],
                                       device=device)
            beam_idx = torch.tensor([b[2] for b in next_beams],
                                    device=device)
            new_words = torch.tensor([[b[1]] for b in next_beams],
                                     device=device)
            rows = rows[beam_idx]
            words = torch.cat((words[beam_idx], new_words), dim=1)
            if cache is not None:
                cache.reorder(beam_idx)
                cache.drop_last(1)  # the <mask> slot
        return [h.words for h in hyps], [h.score for h in hyps]

    def predict(self, images: Tensor,
                data_samples: Optional[List[DataSample]] = None
                ) -> List[DataSample]:
        """Set ``pred_caption`` (what mmpretrain's ``COCOCaption`` metric
        reads); ``image_id`` and the rest of the samples stay as they
        are."""
        if self.tokenizer is None:
            raise ValueError('BEiT3Caption.predict needs a tokenizer: set '
                             "tokenizer=dict(type='BEiT3Tokenizer', "
                             "name_or_path='data/beit3.spm')")
        words, _ = self.generate(images)
        if data_samples is None:
            data_samples = [DataSample() for _ in range(len(images))]
        for sample, ids in zip(data_samples, words):
            sample.pred_caption = self.tokenizer.decode(
                ids, skip_special_tokens=True)
        return data_samples
