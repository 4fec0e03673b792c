"""BEiT3 backbone: released key layout, parity with torchscale, the
mmpretrain output convention and its errors."""
import pytest
import torch
import torch.nn.functional as F
from helpers import TINY, TINY_IMG, VOCAB, randomize_, torchscale_beit3

from beit3_mm.models import BEiT3


@pytest.fixture(autouse=True)
def no_grad():
    with torch.no_grad():
        yield


def tiny(**kwargs) -> BEiT3:
    kwargs.setdefault('out_type', 'raw')
    return BEiT3(arch=TINY, img_size=TINY_IMG, vocab_size=VOCAB,
                 **kwargs).eval()


def pair(ref_seed=0, output_norm=True, arch=TINY, img=TINY_IMG):
    ref = torchscale_beit3(arch, img, output_norm=output_norm, seed=ref_seed)
    ours = BEiT3(arch=arch, img_size=img, vocab_size=VOCAB,
                 output_norm=output_norm, out_type='raw').eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def inputs(batch=3, text_len=7, img=TINY_IMG, seed=1):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, img, img, generator=g)
    text = torch.randint(0, VOCAB, (batch, text_len), generator=g)
    pad = torch.zeros(batch, text_len, dtype=torch.bool)
    for i in range(batch):  # a different length for each sample
        pad[i, text_len - 2 * i:] = True
    return images, text, pad


def test_released_key_layout_base():
    """The base model holds exactly the 491 released keys and 220,987,392
    parameters (spec section 1 and 3)."""
    model = BEiT3(arch='base', output_norm=True, out_type='cls_token')
    sd = model.state_dict()
    assert len(sd) == 491
    assert sum(v.numel() for v in sd.values()) == 220_987_392
    expected = {
        'text_embed.weight': (64010, 768),
        'vision_embed.cls_token': (1, 1, 768),
        'vision_embed.mask_token': (1, 1, 768),
        'vision_embed.proj.weight': (768, 3, 16, 16),
        'encoder.embed_positions.A.weight': (199, 768),
        'encoder.embed_positions.B.weight': (1024, 768),
        'encoder.layers.11.self_attn.q_proj.A.weight': (768, 768),
        'encoder.layers.0.self_attn.inner_attn_ln.B.bias': (768, ),
        'encoder.layers.0.ffn.A.fc1.weight': (3072, 768),
        'encoder.layers.0.ffn.B.ffn_layernorm.weight': (3072, ),
        'encoder.layers.3.final_layer_norm.A.weight': (768, ),
        'encoder.layer_norm.B.weight': (768, ),
    }
    for k, shape in expected.items():
        assert tuple(sd[k].shape) == shape, k


def test_vision_only_base_builds_no_language_half():
    model = BEiT3(arch='base', with_language=False, out_type='avg_featmap')
    keys = list(model.state_dict())
    assert not any('.B.' in k or k.startswith('text_embed') for k in keys)
    # the spec's vision-path count (timm's classifier: a 1000-class head,
    # no mask token) from ours
    head, mask_token = 1000 * 768 + 1000, 768
    n = sum(p.numel() for p in model.parameters())
    assert n + head - mask_token == 86_661_352


@pytest.mark.parametrize('output_norm', [True, False])
def test_parity_all_inputs(output_norm):
    ref, ours = pair(output_norm=output_norm)
    images, text, pad = inputs()
    mask = torch.zeros(text.shape[0], (TINY_IMG // 8)**2, dtype=torch.bool)
    mask[:, ::3] = True
    cases = [
        (dict(visual_tokens=images), dict(images=images)),
        (dict(visual_tokens=images, vision_masked_position=mask),
         dict(images=images, image_mask=mask)),
        (dict(textual_tokens=text, text_padding_position=pad),
         dict(text_ids=text, text_padding_mask=pad)),
        (dict(textual_tokens=text), dict(text_ids=text)),
        (dict(visual_tokens=images, textual_tokens=text,
              text_padding_position=pad),
         dict(images=images, text_ids=text, text_padding_mask=pad)),
    ]
    for ref_kwargs, our_kwargs in cases:
        expected = ref(**ref_kwargs)['encoder_out']
        got = ours.encode(**our_kwargs)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5,
                                   msg=str(list(our_kwargs)))


def test_parity_seq2seq_attn_mask():
    """The captioning mask: image sees image, text sees image + its past."""
    ref, ours = pair()
    images, text, pad = inputs()
    n_img, n_txt = (TINY_IMG // 8)**2 + 1, text.shape[1]
    T = n_img + n_txt
    blocked = torch.ones(T, T)
    blocked[:, :n_img] = 0
    blocked[n_img:, n_img:] = torch.triu(torch.ones(n_txt, n_txt), 1)
    expected = ref(visual_tokens=images, textual_tokens=text,
                   text_padding_position=pad,
                   attn_mask=blocked)['encoder_out']
    got = ours.encode(images=images, text_ids=text, text_padding_mask=pad,
                      attn_mask=blocked)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_parity_base_image_text():
    arch = BEiT3.arch_zoo['base']
    ref, ours = pair(arch=arch, img=64)
    images, text, pad = inputs(batch=2, text_len=9, img=64)
    expected = ref(visual_tokens=images, textual_tokens=text,
                   text_padding_position=pad)['encoder_out']
    got = ours.encode(images=images, text_ids=text, text_padding_mask=pad)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_padding_does_not_change_real_tokens():
    ours = tiny(output_norm=True)
    randomize_(ours)
    images, text, _ = inputs(batch=1)
    short = ours.encode(images=images, text_ids=text[:, :4])
    padded_ids = torch.cat((text[:, :4], torch.ones(1, 5, dtype=torch.long)),
                           1)
    pad = torch.tensor([[0] * 4 + [1] * 5], dtype=torch.bool)
    long = ours.encode(images=images, text_ids=padded_ids,
                       text_padding_mask=pad)
    n = short.shape[1]
    torch.testing.assert_close(long[:, :n], short, rtol=0, atol=1e-5)


@pytest.mark.parametrize('out_type,shape', [
    ('cls_token', (2, 32)),
    ('avg_featmap', (2, 32)),
    ('featmap', (2, 32, 4, 4)),
    ('raw', (2, 17, 32)),
])
def test_forward_out_types(out_type, shape):
    model = tiny(out_type=out_type, out_indices=(0, -1), with_language=False)
    randomize_(model)
    images = torch.randn(2, 3, TINY_IMG, TINY_IMG)
    outs = model(images)
    assert len(outs) == 2 and tuple(outs[1].shape) == shape
    tokens = model.encode(images=images)
    if out_type == 'cls_token':
        torch.testing.assert_close(outs[1], tokens[:, 0])
    elif out_type == 'avg_featmap':
        torch.testing.assert_close(outs[1],
                                   model.fc_norm(tokens[:, 1:].mean(1)))
    elif out_type == 'featmap':
        torch.testing.assert_close(outs[1][:, :, 1, 2], tokens[:, 1 + 4 + 2])
    else:
        torch.testing.assert_close(outs[1], tokens)
    assert not torch.allclose(outs[0], outs[1])


def test_with_cp_same_outputs_and_grads():
    images = torch.randn(2, 3, TINY_IMG, TINY_IMG)
    outs, grads = [], []
    with torch.enable_grad():
        for with_cp in (False, True):
            model = tiny(with_cp=with_cp)
            randomize_(model)
            model.train()
            out = model.encode(
                images=images, text_ids=torch.ones(2, 3, dtype=torch.long))
            out.square().sum().backward()
            outs.append(out.detach())
            grads.append(model.encoder.layers[0].ffn.A.fc1.weight.grad)
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(grads[0], grads[1])


def test_drop_path_linspace():
    model = tiny(drop_path_rate=0.3)
    rates = [getattr(layer.drop_path, 'drop_prob', 0.)
             for layer in model.encoder.layers]
    assert rates == pytest.approx([0., 0.3])


def test_get_layer_depth_official_rule():
    model = tiny()
    L = TINY['num_layers']
    cases = {
        'backbone.text_embed.weight': 0,
        'backbone.vision_embed.cls_token': 0,
        'backbone.vision_embed.proj.weight': 0,
        'backbone.encoder.embed_positions.A.weight': 0,
        'backbone.encoder.layers.0.ffn.A.fc1.weight': 1,
        'backbone.encoder.layers.1.self_attn.q_proj.B.bias': 2,
        'backbone.encoder.layer_norm.A.weight': L + 1,
        'backbone.fc_norm.weight': L + 1,
        'head.fc.weight': L + 1,
    }
    for name, depth in cases.items():
        assert model.get_layer_depth(name, 'backbone.') == (depth, L + 2), name


def test_frozen_stages():
    model = tiny(frozen_stages=1)
    model.train()
    assert not model.vision_embed.proj.weight.requires_grad
    assert not model.encoder.layers[0].ffn.A.fc1.weight.requires_grad
    assert model.encoder.layers[1].ffn.A.fc1.weight.requires_grad
    assert not model.encoder.layers[0].training
    assert model.encoder.layers[1].training


def test_mask_token_trains_only_for_masked_image_modeling():
    """A trainable parameter without a gradient stops DDP: the mask token is
    frozen unless the model masks images."""
    images = torch.randn(2, 3, TINY_IMG, TINY_IMG)
    mask = torch.zeros(2, (TINY_IMG // TINY['patch_size'])**2, dtype=bool)
    mask[:, :3] = True
    model = tiny().train()
    assert not model.vision_embed.mask_token.requires_grad
    assert 'vision_embed.mask_token' in model.state_dict()
    with pytest.raises(ValueError, match='train_mask_token=True'):
        model.encode(images=images, image_mask=mask)
    tiny().eval().encode(images=images, image_mask=mask)  # evaluation
    model = tiny(train_mask_token=True).train()
    with torch.enable_grad():
        model.encode(images=images, image_mask=mask).sum().backward()
    assert model.vision_embed.mask_token.grad.abs().sum() > 0


def test_layers_are_built_with_their_options():
    """layer_cfgs: one dict for every layer, or one per layer."""
    model = tiny(layer_cfgs=dict(window_size=2))
    assert [layer.self_attn.window_size
            for layer in model.encoder.layers] == [2, 2]
    model = tiny(layer_cfgs=[dict(rel_pos_size=(4, 4)), dict()])
    attn = [layer.self_attn for layer in model.encoder.layers]
    assert attn[0].rel_pos.h.shape == (7, TINY['embed_dims'] //
                                       TINY['num_heads'])
    assert attn[1].rel_pos is None and attn[1].window_size == 0
    with pytest.raises(ValueError, match='1 entries for 2 layers'):
        tiny(layer_cfgs=[dict()])


def test_bad_inputs_have_clear_errors():
    model = tiny()
    with pytest.raises(ValueError, match=r'img_size=\(32, 32\)'):
        model.encode(images=torch.randn(1, 3, 40, 40))
    with pytest.raises(ValueError, match='not divisible by the patch'):
        BEiT3(arch=TINY, img_size=36)
    with pytest.raises(ValueError, match='exactly the keys'):
        BEiT3(arch=dict(TINY, embed_dim=3))
    with pytest.raises(ValueError, match="arch='huge'"):
        BEiT3(arch='huge')
    with pytest.raises(ValueError, match='out_type'):
        BEiT3(arch=TINY, img_size=TINY_IMG, out_type='pooled')
    with pytest.raises(ValueError, match='text positions'):
        model.encode(text_ids=torch.ones(1, 1023, dtype=torch.long))
    with pytest.raises(ValueError, match='with_language=False'):
        tiny(with_language=False).encode(text_ids=torch.ones(1, 3).long())


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_ffn_gelu_is_the_reference_one_under_autocast(dtype):
    """The reference computes GELU in float32 and casts back; ours skips
    the copies where the kernel already does that: same bits."""
    from beit3_mm.models.layers.multiway import FeedForward
    ffn = FeedForward(32, 64)
    randomize_(ffn)
    x = 4 * torch.randn(2, 7, 32)
    with torch.enable_grad(), torch.autocast('cpu', dtype=dtype):
        ours = ffn(x)
        h = ffn.fc1(x)
        ref = ffn.fc2(ffn.ffn_layernorm(F.gelu(h.float()).type_as(h)))
    assert ours.dtype == dtype
    assert torch.equal(ours, ref)


def test_bf16_autocast_stays_close_to_float32():
    """Under CPU bf16 autocast the norms stay in bf16 and an expert's q, k
    and v run as one matrix product: outputs stay within bf16 rounding of
    float32, and the weights' gradients are float32."""
    _, ours = pair()
    images, text, pad = inputs()
    ref = ours.encode(images, text, pad)
    with torch.enable_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        out = ours.encode(images, text, pad)
        out.float().sum().backward()
    err = (out.float() - ref).norm() / ref.norm()
    assert err < 2e-2, err
    grads = [p.grad for p in ours.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 for g in grads)
