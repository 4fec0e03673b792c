"""Dual encoder: the tokenizer, retrieval (released-file parity, loss,
masks, the retrieval loop, inferencers) and zero-shot classification."""
import json
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import (ROOT, TINY, TINY_IMG, VOCAB, build_model, converted_model,
                     init_model, official_resize, padded_ids, save_released,
                     torchscale_beit3)
from mmengine.config import Config
from mmpretrain.structures import DataSample
from PIL import Image

import beit3_mm  # noqa: F401
from beit3_mm.demo import SHAPES, draw_shape, train_demo_tokenizer
from beit3_mm.models.multimodal import BEiT3Tokenizer, contrastive_loss

RET_DIR = osp.join(ROOT, 'configs/beit3/retrieval')
ZS_DIR = osp.join(ROOT, 'configs/beit3/zero_shot')
COCO_CFG = osp.join(RET_DIR,
                    'beit3-base-p16_retrieval_16xb192-15e_coco-384px.py')
SENTENCES = [
    f'a {size} {colour} {shape} on a dark background'
    for size in ('small', 'big') for colour in ('red', 'green', 'blue')
    for shape in SHAPES
]


@pytest.fixture(scope='module')
def spm(tmp_path_factory) -> str:
    """A tiny sentencepiece model standing in for beit3.spm."""
    return train_demo_tokenizer(
        SENTENCES, str(tmp_path_factory.mktemp('tok') / 'demo.spm'),
        vocab_size=60)


def tiny_cfg(path: str, spm: str, img_size: int = TINY_IMG) -> Config:
    """A recipe config with the tiny arch, the demo tokenizer and no
    pretrained file."""
    cfg = Config.fromfile(path)
    cfg.model.backbone.update(
        arch=TINY, img_size=img_size, vocab_size=VOCAB, drop_path_rate=0.,
        with_cp=False)
    cfg.model.tokenizer.name_or_path = spm
    cfg.model.init_cfg = None
    return cfg


def itc_heads(dims: int, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        'vision_head.weight': 0.1 * torch.randn(dims, dims, generator=g),
        'language_head.weight': 0.1 * torch.randn(dims, dims, generator=g),
        'logit_scale': torch.tensor(2.9),
    }


def official_features(ref, heads, images, ids, pad):
    """``BEiT3ForRetrieval.forward(only_infer=True)`` of the official code,
    written out over the torchscale backbone."""
    with torch.no_grad():
        x = ref(textual_tokens=None, visual_tokens=images,
                text_padding_position=None)['encoder_out']
        vision = F.normalize(x[:, 0] @ heads['vision_head.weight'].T, dim=-1)
        x = ref(textual_tokens=ids, visual_tokens=None,
                text_padding_position=pad)['encoder_out']
        language = F.normalize(
            x[:, 0] @ heads['language_head.weight'].T, dim=-1)
    return vision, language


def official_clip_loss(image_feat, text_feat, scale):
    """The official ``utils.ClipLoss`` on one process."""
    logits_per_image = scale * image_feat @ text_feat.T
    logits_per_text = scale * text_feat @ image_feat.T
    labels = torch.arange(len(image_feat))
    return (F.cross_entropy(logits_per_image, labels) +
            F.cross_entropy(logits_per_text, labels)) / 2


# ----------------------------------------------------------------- tokenizer
def test_tokenizer_follows_xlmr(spm):
    import sentencepiece
    tok = BEiT3Tokenizer(spm)
    sp = sentencepiece.SentencePieceProcessor(model_file=spm)
    ids = tok.convert_tokens_to_ids(['<s>', '<pad>', '</s>', '<unk>'])
    assert ids == [0, 1, 2, 3]
    assert tok.convert_tokens_to_ids('<mask>') == sp.get_piece_size() + 1
    assert len(tok) == sp.get_piece_size() + 2
    text = 'a big red circle'
    pieces = sp.encode(text)
    assert tok(text)['input_ids'] == [0] + [p + 1 for p in pieces] + [2]
    # a folder holding beit3.spm works too
    folder = osp.dirname(spm)
    import shutil
    shutil.copy(spm, osp.join(folder, 'beit3.spm'))
    assert BEiT3Tokenizer(folder)(text)['input_ids'] == tok(text)['input_ids']


def test_tokenize_truncates_and_pads(spm):
    cfg = tiny_cfg(COCO_CFG, spm)
    cfg.model.max_text_len = 6
    model = build_model(cfg)
    long = ' '.join(SENTENCES[:3])
    ids, pad = model.tokenize([long, 'red'])
    pieces = [p + 1 for p in model.tokenizer.sp_model.encode(long)]
    assert ids.shape == (2, 6)
    assert ids[0].tolist() == [0] + pieces[:4] + [2]
    assert pad[0].tolist() == [0] * 6
    n = len(model.tokenizer('red')['input_ids'])
    assert ids[1, n:].eq(1).all() and ids[1, n - 1] == 2
    assert pad[1].tolist() == [0] * n + [1] * (6 - n)


def test_tokenizer_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.spm.*beit3.spm'):
        BEiT3Tokenizer(str(tmp_path / 'missing.spm'))
    bad = tmp_path / 'notes.spm'
    bad.write_text('not a sentencepiece model')
    with pytest.raises(ValueError, match='notes.spm.*not a sentencepiece'):
        BEiT3Tokenizer(str(bad))


# ------------------------------------------------------------------- parity
@pytest.mark.parametrize('arch,img_size', [('tiny', TINY_IMG),
                                           ('base', 224)])
def test_released_itc_file_gives_official_scores(tmp_path, spm, arch,
                                                 img_size):
    """A released ITC file through init_cfg and through the converter gives
    the official features, similarity scores and loss."""
    from beit3_mm.models import BEiT3
    arch = TINY if arch == 'tiny' else arch
    ref = torchscale_beit3(BEiT3._parse_arch(arch), img_size)
    dims = ref.text_embed.weight.shape[1]
    heads = itc_heads(dims)
    src = save_released(tmp_path / 'itc.pth', ref.state_dict(), heads)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, img_size, img_size, generator=g)
    ids, pad = padded_ids([5, 9, 3], 10)
    vision, language = official_features(ref, heads, images, ids, pad)
    expected = vision @ language.T
    del ref

    cfg = tiny_cfg(COCO_CFG, spm, img_size)
    cfg.model.backbone.arch = arch
    cfg.model.init_cfg = dict(type='Pretrained', checkpoint=src)
    model = build_model(cfg).eval()
    model.init_weights()
    assert model.logit_scale.item() == pytest.approx(2.9)

    def check(model):
        with torch.no_grad():
            v = model.encode_images(images)
            t = model.encode_texts(ids, pad)
        torch.testing.assert_close(v, vision, rtol=0, atol=1e-5)
        torch.testing.assert_close(t, language, rtol=0, atol=1e-5)
        torch.testing.assert_close(v @ t.T, expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(
            contrastive_loss(v, t[:2], model.logit_scale.exp()),
            official_clip_loss(vision, language[:2], np.exp(2.9)),
            rtol=0, atol=1e-5)

    check(model)
    check(converted_model(cfg, src, str(tmp_path / 'itc_mm.pth'),
                          'retrieval'))


def test_itc_file_loads_at_384_like_the_official_resize(tmp_path, spm):
    """The 224 table of the ITC file, resized on loading into a 384 model
    (here 32 -> 48 px), gives the official model built at 384."""
    ref = torchscale_beit3(TINY, TINY_IMG, seed=3)
    heads = itc_heads(32, seed=4)
    src = save_released(tmp_path / 'itc.pth', ref.state_dict(), heads)
    state = ref.state_dict()
    key = 'encoder.embed_positions.A.weight'
    state[key] = official_resize(state[key], 48 // TINY['patch_size'])
    ref48 = torchscale_beit3(TINY, 48)
    ref48.load_state_dict(state)
    images = torch.randn(2, 3, 48, 48)
    ids, pad = padded_ids([4, 7], 8)
    vision, language = official_features(ref48, heads, images, ids, pad)

    cfg = tiny_cfg(COCO_CFG, spm, img_size=48)
    cfg.model.init_cfg = dict(type='Pretrained', checkpoint=src)
    model = build_model(cfg).eval()
    model.init_weights()
    with torch.no_grad():
        torch.testing.assert_close(
            model.encode_images(images) @ model.encode_texts(ids, pad).T,
            vision @ language.T, rtol=0, atol=1e-5)


# ------------------------------------------------------------- loss, masks
@pytest.fixture(scope='module')
def tiny_model(spm):
    return init_model(tiny_cfg(COCO_CFG, spm))


def test_loss_is_the_clip_loss(tiny_model):
    model = tiny_model.train()
    images = torch.randn(3, 3, TINY_IMG, TINY_IMG)
    texts = SENTENCES[:3]
    samples = [DataSample(text=t) for t in texts]
    losses = model.loss(images, samples)
    with torch.no_grad():
        expected = official_clip_loss(
            model.encode_images(images),
            model.extract_text_embeddings(texts), np.exp(np.log(1 / 0.07)))
    torch.testing.assert_close(losses['loss'], expected, rtol=0, atol=1e-5)
    assert losses['logit_scale'].item() == pytest.approx(1 / 0.07)
    model.zero_grad()
    losses['loss'].backward()
    assert model.logit_scale.grad is not None and model.logit_scale.grad != 0
    assert model.language_head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match='one text per image'):
        model.loss(images, samples[:2])


def test_padding_does_not_change_real_tokens(tiny_model):
    model = tiny_model.eval()
    ids, pad = padded_ids([6], 6)
    wide, wide_pad = padded_ids([6], 11)
    wide[:, :6] = ids
    wide[:, 6:] = torch.randint(4, VOCAB, (1, 5))  # junk in the padding
    with torch.no_grad():
        short = model.backbone.encode(text_ids=ids, text_padding_mask=pad)
        padded = model.backbone.encode(
            text_ids=wide, text_padding_mask=wide_pad)
        flipped = model.backbone.encode(
            text_ids=wide, text_padding_mask=1 - wide_pad)
    torch.testing.assert_close(padded[:, :6], short, rtol=0, atol=1e-5)
    assert not torch.allclose(flipped[:, :6], short, atol=1e-3)
    with torch.no_grad():
        torch.testing.assert_close(
            model.encode_texts(wide, wide_pad), model.encode_texts(ids, pad),
            rtol=0, atol=1e-5)


def test_no_texts_is_an_error(tiny_model):
    with pytest.raises(ValueError, match='empty list of texts'):
        tiny_model.extract_text_embeddings([])


def _contrastive_worker(rank, world, init_file, images, texts, out_dir):
    """One process of a gloo group: the loss and gradients of its shard."""
    import torch.distributed as dist
    dist.init_process_group(
        'gloo', init_method=f'file://{init_file}', rank=rank,
        world_size=world)
    n = len(images) // world
    img = images[rank * n:(rank + 1) * n].clone().requires_grad_()
    txt = texts[rank * n:(rank + 1) * n].clone().requires_grad_()
    scale = torch.tensor(5., requires_grad=True)
    loss = contrastive_loss(img, txt, scale)
    loss.backward()
    torch.save(dict(loss=loss.detach(), img=img.grad, txt=txt.grad,
                    scale=scale.grad), osp.join(out_dir, f'{rank}.pth'))
    dist.destroy_process_group()


@pytest.mark.slow
def test_contrastive_loss_across_processes(tmp_path):
    """Two processes: the mean of their losses and their gradients (summed
    over processes as DDP then averages) are the one-process loss of the
    whole batch and its gradients."""
    g = torch.Generator().manual_seed(0)
    images = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    texts = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    torch.multiprocessing.spawn(
        _contrastive_worker,
        args=(2, str(tmp_path / 'init'), images, texts, str(tmp_path)),
        nprocs=2)
    out = [torch.load(tmp_path / f'{r}.pth') for r in range(2)]

    img = images.clone().requires_grad_()
    txt = texts.clone().requires_grad_()
    scale = torch.tensor(5., requires_grad=True)
    loss = official_clip_loss(img, txt, scale)
    loss.backward()
    torch.testing.assert_close((out[0]['loss'] + out[1]['loss']) / 2,
                               loss.detach())
    # each process's feature gradient is d(sum of losses)/d(its rows)
    torch.testing.assert_close(
        torch.cat([out[0]['img'], out[1]['img']]) / 2, img.grad)
    torch.testing.assert_close(
        torch.cat([out[0]['txt'], out[1]['txt']]) / 2, txt.grad)
    torch.testing.assert_close((out[0]['scale'] + out[1]['scale']) / 2,
                               scale.grad)


# ----------------------------------------------------------- retrieval loop
def shuffled_val_set(root: str):
    """The VL demo's COCO-format val set with its annotations shuffled (not
    grouped by image: the loop's text order is not the text id order)."""
    from beit3_mm.demo import make_vl_demo
    files = make_vl_demo(root, num_train=2, num_val=12, num_train_pairs=2,
                         num_val_pairs=2, questions_per_image=1,
                         img_size=TINY_IMG)
    with open(osp.join(root, files['captions_val'])) as f:
        ann = json.load(f)
    # distinct captions only: equal scores would make top-k order arbitrary
    unique = list({a['caption']: a for a in ann['annotations']}.values())
    order = np.random.default_rng(0).permutation(len(unique))
    ann['annotations'] = [unique[k] for k in order]
    with open(osp.join(root, 'shuffled.json'), 'w') as f:
        json.dump(ann, f)
    return ann['images'], ann['annotations']


def recall(scores: torch.Tensor, positives, k: int) -> float:
    """Recall@k (%) of score rows against their positive column indices."""
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    hits = [bool(set(t.tolist()) & set(p)) for t, p in zip(top, positives)]
    return 100 * sum(hits) / len(hits)


def test_retrieval_val_loop_gives_recall_both_ways(tmp_path, spm):
    """mmpretrain's RetrievalValLoop + RetrievalRecall through a Runner
    give the recall of the model's own similarity matrix, both ways."""
    from mmengine.runner import Runner
    root = str(tmp_path / 'demo')
    images, anns = shuffled_val_set(root)
    cfg = tiny_cfg(COCO_CFG, spm)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.val_dataloader.update(batch_size=4, num_workers=0,
                              persistent_workers=False)
    cfg.val_dataloader.dataset.update(
        data_root=root, ann_file='shuffled.json', data_prefix='images')
    cfg.val_dataloader.dataset.pipeline[1].scale = (TINY_IMG, TINY_IMG)
    for key in ('train_dataloader', 'train_cfg', 'optim_wrapper',
                'param_scheduler', 'auto_scale_lr', 'test_dataloader',
                'test_cfg', 'test_evaluator'):
        cfg[key] = None
    cfg.default_hooks.checkpoint = None  # save_best needs a training run
    runner = Runner.from_cfg(cfg)
    metrics = runner.val()

    model = runner.model.eval()
    pixels = np.stack([
        np.asarray(Image.open(osp.join(root, 'images', 'val', i['file_name'])))
        for i in images
    ])
    pixels = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        scores = model.extract_image_embeddings(
            pixels) @ model.extract_text_embeddings(
                [a['caption'] for a in anns]).T
    row = {img['id']: i for i, img in enumerate(images)}
    text_pos = [[j for j, a in enumerate(anns) if row[a['image_id']] == i]
                for i in range(len(images))]
    image_pos = [[row[a['image_id']]] for a in anns]
    for k in (1, 5, 10):
        assert metrics[f'i2t/retrieval/Recall@{k}'] == pytest.approx(
            recall(scores, text_pos, k), abs=1e-4)
        assert metrics[f't2i/retrieval/Recall@{k}'] == pytest.approx(
            recall(scores.T, image_pos, k), abs=1e-4)


# --------------------------------------------------------------- inferencers
@pytest.fixture
def inference_setup(tmp_path, spm, tiny_model):
    """A tiny config and its checkpoint, and a few demo images."""
    cfg = tiny_cfg(COCO_CFG, spm)
    cfg.test_dataloader.dataset.pipeline[1].scale = (TINY_IMG, TINY_IMG)
    ckpt = str(tmp_path / 'tiny.pth')
    torch.save(dict(state_dict=tiny_model.state_dict()), ckpt)
    rng = np.random.default_rng(0)
    paths = []
    for i, shape in enumerate(SHAPES):
        paths.append(str(tmp_path / f'{shape}.png'))
        draw_shape(shape, TINY_IMG, rng).save(paths[-1])
    pixels = torch.stack([
        torch.from_numpy(np.asarray(Image.open(p))).permute(2, 0, 1)
        for p in paths
    ]).float() / 127.5 - 1
    return cfg, ckpt, paths, tiny_model.eval().extract_image_embeddings(
        pixels)


def test_text_to_image_inferencer(inference_setup):
    from mmpretrain import TextToImageRetrievalInferencer
    cfg, ckpt, paths, image_emb = inference_setup
    inferencer = TextToImageRetrievalInferencer(
        cfg, prototype=paths, pretrained=ckpt, device='cpu')
    queries = SENTENCES[:2]
    results = inferencer(queries, topk=2)
    scores = inferencer.model.extract_text_embeddings(queries) @ image_emb.T
    for result, row in zip(results, scores):
        best = row.topk(2)
        assert [m['sample_idx'] for m in result] == best.indices.tolist()
        assert result[0]['sample']['img_path'] == paths[best.indices[0]]
        assert result[0]['match_score'].item() == pytest.approx(
            best.values[0].item(), abs=1e-5)


def test_image_to_text_inferencer(inference_setup):
    from mmpretrain import ImageToTextRetrievalInferencer
    cfg, ckpt, paths, image_emb = inference_setup
    texts = SENTENCES[:5]
    inferencer = ImageToTextRetrievalInferencer(
        cfg, prototype=texts, pretrained=ckpt, device='cpu')
    results = inferencer(paths[:2], topk=3)
    scores = image_emb[:2] @ inferencer.model.extract_text_embeddings(
        texts).T
    for result, row in zip(results, scores):
        best = row.topk(3)
        assert [m['text'] for m in result] == [
            texts[i] for i in best.indices
        ]
        assert result[0]['match_score'].item() == pytest.approx(
            best.values[0].item(), abs=1e-5)


# ------------------------------------------------------------------ zero-shot
ZS_CFG = osp.join(ZS_DIR, 'beit3-base-p16_zeroshot-cls_in1k.py')
PROMPTS = ['a photo of a {}.', 'a {} on a dark background']


def zero_shot_model(spm):
    cfg = tiny_cfg(ZS_CFG, spm)
    cfg.model.update(classes=list(SHAPES), prompts=PROMPTS)
    torch.manual_seed(1)
    model = build_model(cfg)
    model.init_weights()
    return model


def manual_class_embeddings(model):
    per_class = [
        F.normalize(
            model.extract_text_embeddings([p.format(c) for p in PROMPTS]),
            dim=-1).mean(0) for c in SHAPES
    ]
    return F.normalize(torch.stack(per_class), dim=-1)


def test_zero_shot_predict_and_accuracy(spm):
    from mmengine.evaluator import Evaluator
    model = zero_shot_model(spm).eval()
    images = torch.randn(4, 3, TINY_IMG, TINY_IMG)
    labels = [0, 1, 2, 3]
    samples = [DataSample().set_gt_label(i) for i in labels]
    preds = model.test_step(dict(
        inputs=((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8),
        data_samples=samples))
    with torch.no_grad():
        pixels = ((images + 1) * 127.5).round().clamp(0, 255)
        pixels = pixels[:, [2, 1, 0]] / 127.5 - 1  # BGR -> RGB as loaded
        logits = np.exp(np.log(1 / 0.07)) * model.extract_image_embeddings(
            pixels) @ manual_class_embeddings(model).T
    scores = logits.softmax(-1)
    for pred, row in zip(preds, scores):
        torch.testing.assert_close(pred.pred_score, row, rtol=0, atol=1e-5)
        assert pred.pred_label.item() == row.argmax().item()
    evaluator = Evaluator(dict(type='mmpretrain.Accuracy', topk=(1, )))
    evaluator.process(preds)
    acc = evaluator.evaluate(len(preds))['accuracy/top1']
    expected = 100 * np.mean(
        [row.argmax().item() == i for row, i in zip(scores, labels)])
    assert acc == pytest.approx(expected)
    # the class embeddings are cached for the evaluation, dropped by train()
    assert model._class_embeds is not None
    model.train()
    assert model._class_embeds is None


def test_zero_shot_loss_trains_both_encoders(spm):
    model = zero_shot_model(spm).train()
    images = torch.randn(3, 3, TINY_IMG, TINY_IMG)
    samples = [DataSample().set_gt_label(i) for i in (2, 0, 3)]
    loss = model.loss(images, samples)['loss']
    with torch.no_grad():
        logits = (1 / 0.07) * model.encode_images(
            images) @ manual_class_embeddings(model).T
    torch.testing.assert_close(
        loss.detach(), F.cross_entropy(logits, torch.tensor([2, 0, 3])),
        rtol=0, atol=1e-5)
    loss.backward()
    layer = model.backbone.encoder.layers[0]
    assert layer.ffn.A.fc1.weight.grad.abs().sum() > 0
    assert layer.ffn.B.fc1.weight.grad.abs().sum() > 0


def test_zero_shot_arguments(spm):
    from beit3_mm.models.multimodal.beit3_zero_shot import build_prompts
    assert [p('cat') for p in build_prompts(['a {}.', '{} art'])] == [
        'a cat.', 'cat art'
    ]
    assert len(build_prompts('openai_imagenet')) == 80
    with pytest.raises(ValueError, match='exactly one'):
        build_prompts(['no placeholder'])
    with pytest.raises(ValueError, match='prompts=.*not one of'):
        build_prompts('openai')
    cfg = tiny_cfg(ZS_CFG, spm)
    cfg.model.classes = 'in1k'
    with pytest.raises(ValueError, match='classes=.*not one of'):
        build_model(cfg)
    cfg.model.classes = 'imagenet'
    assert len(build_model(cfg).classes) == 1000


# ------------------------------------------------------------------- configs
RECIPES = {
    'beit3-base-p16_retrieval_16xb192-15e_coco-384px.py':
    ('base', 192, 2e-4, 0.65, 15, 3),
    'beit3-base-p16_retrieval_16xb192-20e_flickr30k-384px.py':
    ('base', 192, 1e-4, 0.65, 20, 5),
    'beit3-large-p16_retrieval_32xb96-15e_coco-384px.py':
    ('large', 96, 5e-5, 0.85, 15, 3),
    'beit3-large-p16_retrieval_32xb96-20e_flickr30k-384px.py':
    ('large', 96, 5e-5, 0.85, 20, 5),
}


def fake_batch(n: int, size: int, texts=None) -> dict:
    """A collated batch (``default_collate``, as the configs' dataloaders):
    (n, 3, size, size) uint8 BGR images and samples with texts."""
    g = torch.Generator().manual_seed(0)
    return dict(
        inputs=torch.randint(
            0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g),
        data_samples=[DataSample(text=t) for t in (texts or SENTENCES[:n])])


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_recipe_configs_train_a_step(name, spm):
    from mmengine.optim import build_optim_wrapper
    arch, batch, lr, decay, epochs, warmup = RECIPES[name]
    cfg = Config.fromfile(osp.join(RET_DIR, name))
    assert cfg.model.backbone.arch == arch
    assert cfg.model.backbone.img_size == 384
    assert cfg.model.backbone.drop_path_rate == 0.2
    assert cfg.model.init_cfg.checkpoint == (
        f'checkpoints/beit3_{arch}_itc_patch16_224.pth')
    assert cfg.model.tokenizer.name_or_path == 'data/beit3.spm'
    assert cfg.data_preprocessor.mean == cfg.data_preprocessor.std == [
        127.5
    ] * 3
    assert cfg.train_dataloader.batch_size == batch
    assert cfg.optim_wrapper.optimizer.lr == lr
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == decay
    assert cfg.train_cfg.max_epochs == epochs
    assert cfg.param_scheduler[0].end == warmup
    assert cfg.param_scheduler[0].start_factor * lr == pytest.approx(1e-6)
    assert cfg.param_scheduler[1].end == epochs
    assert cfg.val_cfg.type == 'RetrievalValLoop'
    train = [t.type for t in cfg.train_dataloader.dataset.pipeline]
    assert train == [
        'LoadImageFromFile', 'RandomResizedCrop', 'RandomFlip', 'PackInputs'
    ]
    crop = cfg.train_dataloader.dataset.pipeline[1]
    assert (crop.scale, crop.crop_ratio_range) == (384, (0.5, 1.0))
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        resize = loader.dataset.pipeline[1]
        assert (resize.type, resize.scale, resize.interpolation) == (
            'Resize', (384, 384), 'bicubic')
        assert 'CleanCaption' not in str(loader.dataset.pipeline)

    cfg = tiny_cfg(osp.join(RET_DIR, name), spm)
    cfg.model.backbone.update(with_cp=True, drop_path_rate=0.2)
    model = build_model(cfg)
    model.init_weights()
    cfg.optim_wrapper.type = 'OptimWrapper'  # AMP needs a GPU
    cfg.optim_wrapper.pop('loss_scale')
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    before = model.vision_head.weight.clone()
    losses = model.train_step(fake_batch(2, TINY_IMG), wrapper)
    assert torch.isfinite(losses['loss'])
    assert not torch.equal(before, model.vision_head.weight)


@pytest.mark.parametrize('name', [
    'beit3-base-p16_zeroshot-retrieval_coco.py',
    'beit3-base-p16_zeroshot-retrieval_flickr30k.py',
    'beit3-large-p16_zeroshot-retrieval_coco.py',
    'beit3-large-p16_zeroshot-retrieval_flickr30k.py',
])
def test_zero_shot_retrieval_configs(name, spm):
    cfg = Config.fromfile(osp.join(ZS_DIR, name))
    arch = 'large' if 'large' in name else 'base'
    assert cfg.model.backbone.img_size == 224
    assert cfg.model.init_cfg.checkpoint == (
        f'checkpoints/beit3_{arch}_itc_patch16_224.pth')
    assert cfg.train_dataloader is None and cfg.val_dataloader is None
    assert cfg.test_cfg.type == 'RetrievalTestLoop'
    assert cfg.test_dataloader.dataset.pipeline[1].scale == (224, 224)
    split = cfg.test_dataloader.dataset.get('split') or osp.basename(
        cfg.test_dataloader.dataset.ann_file)
    assert 'test' in split
    model = build_model(tiny_cfg(osp.join(ZS_DIR, name), spm)).eval()
    with torch.no_grad():
        i2t, t2i = model.test_step(fake_batch(2, TINY_IMG))
    assert len(i2t) == 2 and i2t[0].pred_score.shape == (2, )
    assert len(t2i) == 2 and t2i[0].pred_score.shape == (2, )


@pytest.mark.parametrize('name', [
    'beit3-base-p16_zeroshot-cls_in1k.py',
    'beit3-large-p16_zeroshot-cls_in1k.py',
])
def test_zero_shot_cls_configs(name, spm):
    cfg = Config.fromfile(osp.join(ZS_DIR, name))
    arch = 'large' if 'large' in name else 'base'
    assert cfg.model.type == 'BEiT3ZeroShotClassifier'
    assert cfg.model.backbone.arch == arch
    assert cfg.model.init_cfg.checkpoint == (
        f'checkpoints/beit3_{arch}_itc_patch16_224.pth')
    assert cfg.test_evaluator.type == 'Accuracy'
    assert cfg.data_preprocessor.mean == [127.5] * 3
    cfg = tiny_cfg(osp.join(ZS_DIR, name), spm)
    cfg.model.classes = list(SHAPES)
    model = build_model(cfg).eval()
    batch = fake_batch(2, TINY_IMG)
    batch['data_samples'] = [DataSample().set_gt_label(1) for _ in range(2)]
    with torch.no_grad():
        preds = model.test_step(batch)
    assert preds[0].pred_score.shape == (len(SHAPES), )
