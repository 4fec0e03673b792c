"""BEiT-3 pretraining: masked data modeling on images, texts and image-text
pairs (`BEiT-3 <https://arxiv.org/abs/2208.10442>`_, sections 2.2-2.3)."""
from contextlib import nullcontext
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import get_world_size
from mmengine.logging import MMLogger, print_log
from mmpretrain.models.utils import MultiModalDataPreprocessor
from mmpretrain.structures import DataSample

from beit3_mm.registry import MODELS
from ..backbones import BEiT3
from ..multimodal.base import BEiT3VLModel
from beit3_mm.datasets.pretrain import SOURCES
from ..utils import fit_backbone_state, read_beit3_file, summarize_keys
from .masking import BlockMaskGenerator, mask_text_tokens
from .vqkd import VQKDTokenizer

# the loss entry that carries the gradient under lockstep passes
LOCKSTEP_GRAPH = 'loss_lockstep_graph'  # 'loss': summed by any parse_losses

Tensor = torch.Tensor

HEADS = ('mim_head', 'mlm_head')


def sample_sources(data_samples: Sequence[DataSample]) -> List[str]:
    """The ``source`` of every data sample, checked."""
    sources = []
    for i, sample in enumerate(data_samples):
        source = sample.get('source')
        if source not in SOURCES:
            raise ValueError(
                f'data sample {i} has source={source!r}; BEiT-3 pretraining '
                f'needs a "source" in {SOURCES} in every data sample (end '
                f'the pipelines with PackPretrainInputs)')
        sources.append(source)
    return sources


def split_by_source(data_samples: Sequence[DataSample]
                    ) -> Dict[str, Tuple[Optional[Tensor], List[DataSample]]]:
    """Group a batch by source: ``{source: (rows, samples)}`` for the
    sources present, in batch order; ``rows`` index the batch's images
    (those of the 'image' and 'pair' samples, stacked in sample order by
    :class:`BEiT3PretrainDataPreprocessor`), None for 'text'."""
    groups: Dict[str, Tuple[list, list]] = {}
    num_images = 0
    for sample, source in zip(data_samples, sample_sources(data_samples)):
        rows, samples = groups.setdefault(source, ([], []))
        samples.append(sample)
        if source != 'text':
            rows.append(num_images)
            num_images += 1
    return {
        source: (None if source == 'text' else torch.tensor(rows), samples)
        for source, (rows, samples) in groups.items()
    }


@MODELS.register_module()
class BEiT3PretrainDataPreprocessor(MultiModalDataPreprocessor):
    """:class:`mmpretrain.models.MultiModalDataPreprocessor` for batches
    that mix images, texts and pairs.

    ``inputs`` is the list that mmengine's ``pseudo_collate`` gives, one
    entry per data sample: an image (C, H, W) for the 'image' and 'pair'
    samples, None for the 'text' ones. The images are stacked in sample
    order, converted and normalised; a tensor ``inputs`` (all samples with
    an image) is taken as it is.

    Returns:
        ``images`` (N, C, H, W), N = samples with an image (None for
        none), and ``data_samples``.
    """

    def forward(self, data: dict, training: bool = False) -> dict:
        inputs = data.get('inputs')
        if isinstance(inputs, (list, tuple)):
            samples = data.get('data_samples') or []
            sources = sample_sources(samples)
            if len(sources) != len(inputs):
                raise ValueError(f'{len(inputs)} inputs for {len(sources)} '
                                 f'data samples')
            for i, (img, source) in enumerate(zip(inputs, sources)):
                if (img is not None) != (source != 'text'):
                    raise ValueError(
                        f'data sample {i} ({source!r}) '
                        f'{"has" if img is not None else "lacks"} an image: '
                        f'"image" and "pair" samples carry one, "text" '
                        f'samples none (inputs=None)')
            images = [img for img in inputs if img is not None]
            shapes = {tuple(img.shape) for img in images}
            if len(shapes) > 1:
                raise ValueError(f'images of different shapes in a batch: '
                                 f'{sorted(shapes)}; resize or crop them to '
                                 f'one size in the pipeline')
            data = dict(data, inputs=torch.stack(images) if images else None)
        return super().forward(data, training)


@MODELS.register_module()
class BEiT3Pretrain(BEiT3VLModel):
    """BEiT-3 masked data modeling on images, texts and image-text pairs.

    One step takes a batch mixing three sources, each data sample saying
    which in ``source``:

    - 'image': an image, no text. Masked image modeling: a block-wise mask
      (:class:`BlockMaskGenerator`, ``image_mask_ratio`` of the patches,
      blocks of at least ``mask_min_num_patches``) replaces patches by the
      mask token; ``mim_head`` predicts the tokenizer's code of every
      masked patch (cross-entropy).
    - 'text': ``text_ids`` (a list / 1-D tensor of ids, ``<s> ... </s>``,
      e.g. a corpus packed to ``max_text_len``; ``<pad>`` ids count as
      padding) or ``text`` (a string, tokenised here to ``max_text_len``).
      Masked language modeling: :func:`mask_text_tokens` chooses
      ``text_mask_ratio`` of the tokens that are neither special
      (``tokenizer.all_special_ids``) nor padding, 80% become ``<mask>``,
      10% a random id in ``[3, tokenizer.vocab_size - 1]``, 10% stay;
      ``mlm_head`` predicts every chosen one.
    - 'pair': an image and ``text`` (or ``text_ids``). Both masked
      (``pair_image_mask_ratio``, ``pair_text_mask_ratio``) and encoded
      together by the fusion encoder (full attention, padding excluded);
      both predicted.

    Losses: ``loss_mim_image``, ``loss_mlm_text``, ``loss_mim_pair``,
    ``loss_mlm_pair`` (the mean cross-entropy of each, times the source's
    weight), for the sources the batch holds; mmengine sums them. Also
    logged, not summed: ``mim_acc_image``, ``mlm_acc_text``,
    ``mim_acc_pair``, ``mlm_acc_pair``. A batch without images and pairs
    leaves the vision half (and ``mim_head``) out of the graph, one
    without texts and pairs the language half (and ``mlm_head``): their
    parameters get no gradient (None, so AdamW leaves them alone). Under
    DDP such batches need ``find_unused_parameters=True``, which the
    pretraining configs set.

    Sharded training (FSDP, DeepSpeed ZeRO) needs more: every rank must
    run the same module calls and give every parameter a gradient, as
    FSDP and ZeRO-3 gather the weights of each layer in every pass and
    reduce each unit's gradient once, and ZeRO-2 reduces the gradients of
    the parameters used in buckets. Their beit3-mm strategies set
    ``lockstep_passes``: then, with more than one rank, a source missing
    from a rank's batch gets its pass on 0 samples (:meth:`empty_pass`),
    joined to the loss with weight 0, and one output entry carries the
    whole graph (the logged terms are detached), so that every rank hands
    the wrapper the same outputs. The parameters of a half that no
    rank used get zero gradients (AdamW applies its momentum and weight
    decay to them), as sharded flat gradients give them anyway.

    Images: the data preprocessor gives the student's view (default
    :class:`BEiT3PretrainDataPreprocessor` with mean = std = 127.5, the
    [-1, 1] scaling of the BEiT-3 vision-language models). The tokenizer's
    view is ``pixel / 127.5 - 1`` of the same crop (the official VQ-KD
    ``process_type='default'``): with the default normalisation it is the
    student's view itself; another ``mean`` / ``std`` is undone first.
    The tokenizer gives one code per student patch: when the patch sizes
    differ (the giant's 14 against the tokenizer's 16), its view is
    resized to the student's patch grid times its own patch size (bicubic,
    PIL's kernel, clamped to [-1, 1]), e.g. 224 -> 256 px for 16 x 16
    codes.

    The target generator (a frozen :class:`VQKDTokenizer`) lives outside
    the module tree: no dtype cast (``.half()``, mixed-precision wrappers
    of FSDP or DeepSpeed), optimizer, DDP buffer broadcast or checkpoint
    sees it. :meth:`init_weights` loads it from its ``init_cfg`` (also on
    resume), it follows the images' device, and its codes are computed in
    float32 outside autocast unless ``target_autocast=True``.

    Randomness: every mask is drawn on the CPU from torch's global
    generator (the same masks on any device), so that
    :class:`~beit3_mm.engine.hooks.RandomStateHook` resumes exactly.

    Args:
        backbone (dict): a :class:`~beit3_mm.models.BEiT3` config;
            ``output_norm`` and ``train_mask_token`` default to True here
            and must stay so.
        target_generator (dict): a frozen :class:`VQKDTokenizer` config
            with ``init_cfg`` naming its file. ``mim_head`` predicts its
            ``num_embed`` codes.
        tokenizer (dict): the text tokenizer, e.g. ``dict(type=
            'BEiT3Tokenizer', name_or_path='data/beit3.spm')``; it gives
            ``<mask>``, ``<pad>`` and the special ids.
        max_text_len (int): texts are padded (strings truncated) to this
            length; longer ``text_ids`` are refused. Defaults to 64.
        image_mask_ratio (float): image source. Defaults to 0.4.
        text_mask_ratio (float): text source. Defaults to 0.15.
        pair_image_mask_ratio (float): pairs. Defaults to 0.4.
        pair_text_mask_ratio (float): pairs. Defaults to 0.5.
        mask_min_num_patches (int): smallest mask block. Defaults to 16.
        mask_min_aspect (float): block aspect ratios from this to its
            inverse. Defaults to 0.3.
        loss_weights (dict): weight per source ('image', 'text', 'pair';
            the pair weight applies to both of its losses). Missing ones
            are 1.
        reinit_mim_head (bool): start ``mim_head`` anew (truncated normal,
            std 0.02) after loading ``init_cfg``: the released ``mim_head``
            predicts the codes of an unreleased ViT-L tokenizer, so set it
            for any other tokenizer (needed when the codebook sizes
            differ). Defaults to False.
        target_autocast (bool): run the tokenizer under the surrounding
            autocast (faster; the official BEiT v2 does) instead of in
            float32. Defaults to False.
        data_preprocessor (dict, optional): defaults to
            :class:`BEiT3PretrainDataPreprocessor` with mean = std = 127.5
            and ``to_rgb=True``.
        init_cfg (dict, optional): ``dict(type='Pretrained',
            checkpoint=PATH)``: a released pretraining file
            (``beit3_{base,large}_patch16_224.pth``: ``beit3.*``,
            ``mim_head.*``, ``mlm_head.*``), a beit3_mm checkpoint, or any
            BEiT-3 file for the backbone alone (heads it lacks keep their
            init, logged).
    """

    def __init__(self,
                 backbone: dict,
                 target_generator: dict,
                 tokenizer: dict,
                 max_text_len: int = 64,
                 image_mask_ratio: float = 0.4,
                 text_mask_ratio: float = 0.15,
                 pair_image_mask_ratio: float = 0.4,
                 pair_text_mask_ratio: float = 0.5,
                 mask_min_num_patches: int = 16,
                 mask_min_aspect: float = 0.3,
                 loss_weights: Optional[Dict[str, float]] = None,
                 reinit_mim_head: bool = False,
                 target_autocast: bool = False,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        backbone = dict(
            dict(type='BEiT3', output_norm=True, train_mask_token=True),
            **backbone)
        if data_preprocessor is None:
            data_preprocessor = dict(
                type='BEiT3PretrainDataPreprocessor',
                mean=[127.5] * 3, std=[127.5] * 3, to_rgb=True)
        super().__init__(
            backbone=backbone,
            tokenizer=tokenizer,
            max_text_len=max_text_len,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        # loaded by our init_weights, heads and all
        self.checkpoint, self.pretrained = self.pretrained, None
        bb = self.backbone
        if not (bb.output_norm and bb.train_mask_token and bb.with_language):
            raise ValueError(
                'BEiT3Pretrain needs a backbone with output_norm=True, '
                'train_mask_token=True and with_language=True (the released '
                'pretraining models)')
        if self.tokenizer is None:
            raise ValueError(
                "BEiT3Pretrain needs the text tokenizer: set tokenizer=dict("
                "type='BEiT3Tokenizer', name_or_path='data/beit3.spm')")
        for name in ('mask', 'pad'):
            if getattr(self.tokenizer, f'{name}_token_id', None) is None:
                raise ValueError(f'the tokenizer has no {name} token '
                                 f'(BEiT3Tokenizer has <mask> and <pad>)')
        self.special_ids = sorted(set(self.tokenizer.all_special_ids))

        target = MODELS.build(target_generator)
        if not isinstance(target, VQKDTokenizer) or not target.frozen:
            raise ValueError('target_generator must be a frozen '
                             'VQKDTokenizer config (frozen=True)')
        # outside the module tree, see the class docstring
        object.__setattr__(self, 'target_generator', target)
        self.target_autocast = target_autocast
        pre = self.data_preprocessor
        self._student_is_target_view = bool(
            getattr(pre, '_enable_normalize', False)
            and (pre.mean == 127.5).all() and (pre.std == 127.5).all())

        for name, ratio in (('image_mask_ratio', image_mask_ratio),
                            ('text_mask_ratio', text_mask_ratio),
                            ('pair_image_mask_ratio', pair_image_mask_ratio),
                            ('pair_text_mask_ratio', pair_text_mask_ratio)):
            if not 0 < ratio <= 1:
                raise ValueError(f'{name}={ratio} must be in (0, 1]')
        self.image_masks = BlockMaskGenerator(
            bb.patch_resolution, image_mask_ratio, mask_min_num_patches,
            min_aspect=mask_min_aspect)
        self.pair_image_masks = BlockMaskGenerator(
            bb.patch_resolution, pair_image_mask_ratio, mask_min_num_patches,
            min_aspect=mask_min_aspect)
        self.text_mask_ratio = text_mask_ratio
        self.pair_text_mask_ratio = pair_text_mask_ratio

        loss_weights = dict(loss_weights or {})
        unknown = set(loss_weights) - set(SOURCES)
        if unknown:
            raise ValueError(f'loss_weights has keys {sorted(unknown)}; the '
                             f'sources are {SOURCES}')
        self.loss_weights = {
            s: float(loss_weights.get(s, 1.))
            for s in SOURCES
        }
        self.reinit_mim_head = reinit_mim_head
        #: same passes on every rank, see the class docstring
        self.lockstep_passes = False

        D = bb.embed_dims
        self.mim_head = nn.Linear(D, target.num_embed)
        self.mlm_head = nn.Linear(D, bb.text_embed.num_embeddings)

    # ------------------------------------------------------------ weights
    def init_weights(self) -> None:
        """BEiT init, the tokenizer from its file, then ``init_cfg``'s file
        (and ``mim_head`` anew with ``reinit_mim_head``)."""
        super().init_weights()
        self.target_generator.init_weights()
        if self.checkpoint is not None:
            self.load_pretrained(self.checkpoint)
        if self.reinit_mim_head:
            self.mim_head.apply(BEiT3._init_module)

    def load_pretrained(self, path: str) -> List[str]:
        """Load the backbone and the heads of a BEiT-3 file (see
        ``init_cfg``); returns the logged summary lines.

        Raises:
            ValueError: a head of another shape, e.g. ``mim_head`` over
                another codebook without ``reinit_mim_head=True``.
        """
        backbone, others, notes = read_beit3_file(path)
        state, fit_notes = fit_backbone_state(backbone, self.backbone, path)
        notes += fit_notes
        heads = {k: v for k, v in others.items() if k.startswith(HEADS)}
        if self.reinit_mim_head:
            heads = {k: v for k, v in heads.items()
                     if not k.startswith('mim_head.')}
        own = self.state_dict()
        for k, v in heads.items():
            if k not in own or v.shape != own[k].shape:
                fix = (' (the tokenizer has another codebook size): set '
                       'reinit_mim_head=True' if k.startswith('mim_head.')
                       else '')
                raise ValueError(
                    f'{path}: {k} has shape {tuple(v.shape)}, the model '
                    f'expects {tuple(own[k].shape) if k in own else None}'
                    f'{fix}')
        missing = self.load_state_dict(
            {**{'backbone.' + k: v for k, v in state.items()}, **heads},
            strict=False).missing_keys
        left_out = [k for k in others if k not in heads]
        lines = [f'loaded {len(state)} BEiT-3 backbone tensors and '
                 f'{len(heads)} head tensors from {path}'] + notes
        if missing:
            lines.append(f'not in the file (they keep their init): '
                         f'{summarize_keys(missing)}')
        if left_out:
            lines.append(f'left out: {summarize_keys(left_out)}')
        print_log('; '.join(lines), logger=MMLogger.get_current_instance())
        return lines

    # ------------------------------------------------------------- inputs
    def tokenizer_view(self, images: Tensor) -> Tensor:
        """The tokenizer's input ``pixel / 127.5 - 1`` from the student's
        view (N, 3, H, W): (N, 3, h * p, w * p) for the student's (h, w)
        patch grid and the tokenizer's patch size p (see the class
        docstring)."""
        pre = self.data_preprocessor
        if not self._student_is_target_view:
            if getattr(pre, '_enable_normalize', False):
                images = images * pre.std + pre.mean
            images = images / 127.5 - 1
        p = self.target_generator.encoder.patch_size
        size = tuple(n * p for n in self.patch_grid(images))
        if size == tuple(images.shape[-2:]):
            return images
        return F.interpolate(
            images, size, mode='bicubic', antialias=True).clamp_(-1, 1)

    def patch_grid(self, images: Tensor) -> Tuple[int, int]:
        """The student's patch grid (h, w) of images (N, 3, H, W)."""
        p = self.backbone.patch_size
        return images.shape[-2] // p, images.shape[-1] // p

    @torch.no_grad()
    def visual_tokens(self, images: Tensor) -> Tensor:
        """The target codes (N, h * w) of the student's view (N, 3, H, W),
        one per student patch: in float32 outside autocast unless
        ``target_autocast``.

        Raises:
            ValueError: the tokenizer gives another number of codes.
        """
        target = self.target_generator
        if target.quantize.embedding.weight.device != images.device:
            target.to(images.device)
        view = self.tokenizer_view(images.float())
        ctx = (nullcontext() if self.target_autocast else torch.autocast(
            device_type=images.device.type, enabled=False))
        with ctx:
            codes = target.get_codebook_indices(view)
        h, w = self.patch_grid(images)
        if codes.shape[1] != h * w:
            raise ValueError(
                f'the tokenizer gives {codes.shape[1]} codes for a '
                f'{tuple(view.shape[-2:])} view of images whose student '
                f'patch grid is {h} x {w}: the tokenizer view must be '
                f'that grid times the tokenizer\'s patch size '
                f'({target.encoder.patch_size})')
        return codes

    def text_batch(self, data_samples: Sequence[DataSample]
                   ) -> Tuple[Tensor, Tensor]:
        """Ids (B, max_text_len) and padding mask (B, max_text_len, 1 at
        ``<pad>``) of the samples' ``text_ids`` or ``text``, on the CPU."""
        pad_id = self.tokenizer.pad_token_id
        ids = torch.full((len(data_samples), self.max_text_len), pad_id,
                         dtype=torch.long)
        strings = []
        for i, sample in enumerate(data_samples):
            if 'text_ids' in sample:
                row = torch.as_tensor(sample.text_ids, dtype=torch.long)
                if row.dim() != 1 or row.numel() > self.max_text_len:
                    raise ValueError(
                        f'text_ids of shape {tuple(row.shape)} in a '
                        f'{sample.source!r} sample; 1-D ids of at most '
                        f'max_text_len={self.max_text_len} expected')
                ids[i, :row.numel()] = row
            elif isinstance(sample.get('text'), str):
                strings.append((i, sample.text))
            else:
                raise ValueError(
                    f'a {sample.get("source")!r} sample without "text_ids" '
                    f'or a "text" string: add one of them to '
                    f'PackInputs.algorithm_keys')
        if strings:
            rows, texts = zip(*strings)
            ids[list(rows)] = self.tokenize(texts)[0].cpu()
        return ids, (ids == pad_id).long()

    def corrupt_text(self, text_ids: Tensor, padding_mask: Tensor,
                     mask_ratio: float, source: str) -> Tuple[Tensor, Tensor]:
        """:func:`mask_text_tokens` with this tokenizer's ids; refuses a
        text with nothing to mask."""
        special = torch.tensor(self.special_ids)
        maskable = ~torch.isin(text_ids, special) & (padding_mask == 0)
        empty = (~maskable.any(1)).nonzero().flatten().tolist()
        if empty:
            raise ValueError(
                f'{source!r} samples {empty} of the batch have no token to '
                f'mask (an empty text?): drop empty texts from the data')
        return mask_text_tokens(
            text_ids, maskable, mask_ratio, self.tokenizer.mask_token_id,
            (3, self.tokenizer.vocab_size - 1))

    # ------------------------------------------------------------- losses
    @staticmethod
    def _prediction(head: nn.Linear, x: Tensor, labels: Tensor
                    ) -> Tuple[Tensor, Tensor]:
        """Cross-entropy and accuracy of ``head`` on (N, D) features."""
        logits = head(x)
        loss = F.cross_entropy(logits.float(), labels)
        with torch.no_grad():
            acc = (logits.argmax(-1) == labels).float().mean()
        return loss, acc

    def mim(self, images: Tensor, codes: Tensor,
            masks: BlockMaskGenerator) -> Tuple[Tensor, Tensor]:
        """MIM on images alone: (loss, accuracy)."""
        mask = masks(images.shape[0]).to(images.device)
        x = self.backbone.encode(images=images, image_mask=mask)
        return self._prediction(self.mim_head, x[:, 1:][mask], codes[mask])

    def masked_texts(self, data_samples: Sequence[DataSample],
                     mask_ratio: float, source: str) -> Tuple[Tensor, ...]:
        """Ids, padding mask, corrupted ids and chosen positions (each
        (B, max_text_len)) of the samples' texts, masked on the CPU and
        moved to the model's device."""
        ids, pad = self.text_batch(data_samples)
        masked, chosen = self.corrupt_text(ids, pad, mask_ratio, source)
        return tuple(t.to(self.device) for t in (ids, pad, masked, chosen))

    def mlm(self, data_samples: Sequence[DataSample]
            ) -> Tuple[Tensor, Tensor]:
        """MLM on texts alone: (loss, accuracy)."""
        ids, pad, masked, chosen = self.masked_texts(
            data_samples, self.text_mask_ratio, 'text')
        x = self.backbone.encode(text_ids=masked, text_padding_mask=pad)
        return self._prediction(self.mlm_head, x[chosen], ids[chosen])

    def pair_mdm(self, images: Tensor, codes: Tensor,
                 data_samples: Sequence[DataSample]
                 ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Masked pairs through the fusion encoder: (MIM loss, MIM
        accuracy, MLM loss, MLM accuracy)."""
        mask = self.pair_image_masks(images.shape[0]).to(images.device)
        ids, pad, masked, chosen = self.masked_texts(
            data_samples, self.pair_text_mask_ratio, 'pair')
        x = self.backbone.encode(
            images=images, text_ids=masked, text_padding_mask=pad,
            image_mask=mask)
        num_vision = x.shape[1] - ids.shape[1]
        return (*self._prediction(self.mim_head, x[:, 1:num_vision][mask],
                                  codes[mask]),
                *self._prediction(self.mlm_head, x[:, num_vision:][chosen],
                                  ids[chosen]))

    def loss(self, images: Optional[Tensor],
             data_samples: List[DataSample]) -> Dict[str, Tensor]:
        """The losses and accuracies of a mixed batch (see the class
        docstring).

        Args:
            images: (N, 3, H, W), the images of the 'image' and 'pair'
                samples in sample order; None when there are none.
            data_samples: every sample of the batch, with ``source``.
        """
        groups = split_by_source(data_samples)
        if not groups:
            raise ValueError('BEiT3Pretrain got an empty batch')
        num_images = sum(len(groups[s][1]) for s in ('image', 'pair')
                         if s in groups)
        if (0 if images is None else images.shape[0]) != num_images:
            raise ValueError(
                f'{0 if images is None else images.shape[0]} images for the '
                f'{num_images} "image" and "pair" samples of the batch')
        losses = {}
        w = self.loss_weights
        if num_images:
            codes = self.visual_tokens(images)
        lockstep = self.lockstep_passes and get_world_size() > 1
        stand_ins = []
        for source in SOURCES:  # the same order on every rank
            if source not in groups:
                if lockstep:
                    stand_ins.append(self.empty_pass(source))
            elif source == 'image':
                rows, _ = groups['image']
                loss, acc = self.mim(images[rows], codes[rows],
                                     self.image_masks)
                losses.update(loss_mim_image=w['image'] * loss,
                              mim_acc_image=acc)
            elif source == 'text':
                loss, acc = self.mlm(groups['text'][1])
                losses.update(loss_mlm_text=w['text'] * loss,
                              mlm_acc_text=acc)
            else:
                rows, samples = groups['pair']
                mim_loss, mim_acc, mlm_loss, mlm_acc = self.pair_mdm(
                    images[rows], codes[rows], samples)
                losses.update(
                    loss_mim_pair=w['pair'] * mim_loss, mim_acc_pair=mim_acc,
                    loss_mlm_pair=w['pair'] * mlm_loss, mlm_acc_pair=mlm_acc)
        if lockstep:
            # One output carries the whole graph, whichever sources this
            # rank has: ZeRO-3 hooks each output that needs a gradient and
            # orders its gathers by them, so the count must not vary
            # between ranks (it hung when it did). The logged terms are
            # detached copies; parse_losses adds the carrier (value 0).
            total = sum(v for k, v in losses.items() if k.startswith('loss'))
            total = total + sum(stand_ins)
            losses = {k: v.detach() for k, v in losses.items()}
            losses[LOCKSTEP_GRAPH] = total - total.detach()
        return losses

    def parse_losses(self, losses: Dict[str, Tensor]
                     ) -> Tuple[Tensor, Dict[str, Tensor]]:
        """mmengine's, plus the gradient carrier of lockstep passes
        (:meth:`loss`), which is not logged."""
        carrier = losses.pop(LOCKSTEP_GRAPH, None)
        loss, log_vars = super().parse_losses(losses)
        return (loss if carrier is None else loss + carrier), log_vars

    def empty_pass(self, source: str) -> Tensor:
        """The encoder pass and heads of ``source`` on 0 samples: a zero
        (scalar) that joins the loss, so that every parameter of the pass
        gets a gradient (zero) and every rank runs the same backward."""
        inputs, heads = {}, []
        if source != 'text':  # the mask token too
            h, w = self.backbone.patch_resolution
            # dtype and device from the module's parameters, not the
            # attribute: reading a ZeRO-3 parameter by name outside its
            # module's call gathers it, a collective only this rank makes
            ref = next(self.backbone.vision_embed.parameters())
            inputs.update(
                images=torch.zeros((0, 3, *self.backbone.img_size),
                                   dtype=ref.dtype, device=ref.device),
                image_mask=torch.zeros((0, h * w), dtype=torch.bool,
                                       device=ref.device))
            heads.append(self.mim_head)
        if source != 'image':
            inputs['text_ids'] = torch.zeros(
                (0, self.max_text_len), dtype=torch.long, device=self.device)
            heads.append(self.mlm_head)
        x = self.backbone.encode(**inputs)
        return sum(head(x).sum() for head in heads)

    # ------------------------------------------------------------ others
    def extract_feat(self, images: Optional[Tensor],
                     data_samples: Optional[list] = None
                     ) -> Dict[str, Tensor]:
        """``image_feats`` (N, 1 + h * w, D) of the unmasked images."""
        return dict(image_feats=self.backbone.encode(images=images))

    def predict(self, images: Tensor, data_samples: list) -> List:
        raise NotImplementedError(
            'BEiT3Pretrain has no predict mode: pretraining has no '
            'validation; fine-tune a task model from its checkpoint')
