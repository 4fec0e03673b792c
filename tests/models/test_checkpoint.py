"""Loading released BEiT-3 files: every format, resizing, clear errors,
no arbitrary unpickling."""
import pickle

import pytest
import torch
from helpers import (CONVERTER, ROOT, TINY, TINY_IMG, VOCAB, build_model,
                     official_resize, pretrain_heads, run_tool, save_released,
                     torchscale_beit3)

from beit3_mm.models import BEiT3
from beit3_mm.models.layers import resize_vision_pos_table
from beit3_mm.utils import read_checkpoint


@pytest.fixture(autouse=True)
def no_grad():
    with torch.no_grad():
        yield


@pytest.fixture(scope='module')
def ref():
    return torchscale_beit3(TINY, TINY_IMG, output_norm=True)


def build(path, img_size=TINY_IMG, **kwargs):
    kwargs.setdefault('out_type', 'raw')
    model = BEiT3(arch=TINY, img_size=img_size, vocab_size=VOCAB,
                  init_cfg=dict(type='Pretrained', checkpoint=str(path)),
                  **kwargs)
    model.init_weights()
    return model.eval()


@pytest.mark.parametrize('official_training', [False, True])
def test_pretraining_file_loads_key_for_key(tmp_path, ref, official_training,
                                            caplog):
    path = save_released(tmp_path / 'pt.pth', ref.state_dict(),
                         pretrain_heads(TINY['embed_dims']),
                         official_training=official_training)
    model = build(path, output_norm=True)
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v, rtol=0, atol=0)
    images = torch.randn(2, 3, TINY_IMG, TINY_IMG)
    torch.testing.assert_close(
        model.encode(images=images),
        ref(visual_tokens=images)['encoder_out'], rtol=0, atol=1e-5)


def test_summary_names_what_was_left_out(tmp_path, ref):
    from beit3_mm.models.utils import load_beit3_checkpoint
    path = save_released(tmp_path / 'pt.pth', ref.state_dict(),
                         pretrain_heads(TINY['embed_dims']))
    model = BEiT3(arch=TINY, img_size=TINY_IMG, vocab_size=VOCAB,
                  with_language=False, out_type='cls_token')
    lines = load_beit3_checkpoint(model, path)
    text = ' '.join(lines)
    assert 'mim_head.*' in text and 'mlm_head.*' in text
    n_language = sum(1 for k in ref.state_dict()
                     if '.B.' in k or k.startswith('text_embed'))
    assert f'left out the language half (with_language=False): ' \
        f'{n_language} tensors' in text
    # the vision expert's (A) only
    assert 'encoder.layer_norm (output_norm=False): 2 tensors' in text
    n_vision = len(model.state_dict())
    assert f'loaded {n_vision} ' in text


def test_position_table_resized_with_official_formula(tmp_path, ref):
    path = save_released(tmp_path / 'pt.pth', ref.state_dict())
    model = build(path, img_size=48, output_norm=True)  # grid 4x4 -> 6x6
    expected = official_resize(
        ref.state_dict()['encoder.embed_positions.A.weight'], 6)
    torch.testing.assert_close(
        model.encoder.embed_positions.A.weight, expected, rtol=0, atol=0)
    assert model.encoder.embed_positions.A.weight.shape[0] == 6 * 6 + 3
    model.encode(images=torch.randn(1, 3, 48, 48))  # runs at the new size


def test_resize_is_not_antialiased():
    table = torch.randn(3 + 14 * 14, 8)
    down = resize_vision_pos_table(table, (14, 14), (7, 7))
    torch.testing.assert_close(down, official_resize(table, 7))
    grid = table[3:].reshape(1, 14, 14, 8).permute(0, 3, 1, 2)
    aa = torch.nn.functional.interpolate(
        grid, size=(7, 7), mode='bicubic', align_corners=False,
        antialias=True).permute(0, 2, 3, 1).reshape(49, 8)
    assert not torch.allclose(down[3:], aa, atol=1e-3)


def test_rectangular_target_grid(tmp_path, ref):
    path = save_released(tmp_path / 'pt.pth', ref.state_dict())
    model = build(path, img_size=(32, 48), output_norm=True)
    assert model.encoder.embed_positions.A.weight.shape[0] == 4 * 6 + 3
    out = model(torch.randn(1, 3, 32, 48))[0]
    assert out.shape == (1, 1 + 24, TINY['embed_dims'])


def test_classifier_file_fills_fc_norm(tmp_path, ref):
    state = {
        k: v
        for k, v in ref.state_dict().items()
        if not k.startswith('encoder.layer_norm')
    }
    heads = {
        'fc_norm.weight': torch.randn(32),
        'fc_norm.bias': torch.randn(32),
        'head.weight': torch.randn(10, 32),
        'head.bias': torch.randn(10),
    }
    path = save_released(tmp_path / 'in1k.pth', state, heads)
    model = build(path, with_language=False, out_type='avg_featmap')
    torch.testing.assert_close(model.fc_norm.weight, heads['fc_norm.weight'])


D = TINY['embed_dims']


@pytest.mark.parametrize('kind, heads, mapped', [
    ('pretrain', pretrain_heads(D), ['mim_head.weight', 'mlm_head.bias']),
    ('retrieval', {
        'vision_head.weight': torch.zeros(D, D),
        'language_head.weight': torch.zeros(D, D),
        'logit_scale': torch.tensor(1.)
    }, ['vision_head.weight', 'logit_scale']),
    ('in1k', {
        'fc_norm.weight': torch.ones(D),
        'head.weight': torch.zeros(5, D)
    }, ['backbone.fc_norm.weight', 'head.fc.weight']),
    ('vqa', {
        'pooler.dense.weight': torch.zeros(D, D),
        'head.0.weight': torch.zeros(2 * D, D)
    }, ['pooler.dense.weight', 'head.0.weight']),
    ('nlvr2', {'head.dense1.weight': torch.zeros(2 * D, 4 * D)},
     ['head.dense1.weight']),
    ('captioning', {'mlm_head.weight': torch.zeros(VOCAB, D)},
     ['mlm_head.weight']),
    ('backbone', {}, []),
    (None, {'my_head.weight': torch.zeros(2, D)}, ['my_head.weight']),
])
def test_released_kinds_and_names(ref, kind, heads, mapped):
    """One mapping names a released file's keys for the converter and for
    init_cfg: ``beit3.*`` -> ``backbone.*``, heads as the models name
    them; the in1k classifier keeps the vision experts only."""
    from beit3_mm.models.utils import released_to_mm
    state = {'beit3.' + k: v for k, v in ref.state_dict().items()}
    got, out, dropped = released_to_mm({**state, **heads})
    assert got == kind
    assert all(k in out for k in mapped)
    assert not any(k.startswith('beit3.') for k in out)
    languages = [
        k for k in state if '.B.' in k or k.startswith('beit3.text_embed')
    ]
    if kind == 'in1k':
        assert sorted(dropped) == sorted(
            languages + ['beit3.encoder.layer_norm.A.weight',
                         'beit3.encoder.layer_norm.A.bias'])
        assert not any('backbone.' + k[len('beit3.'):] in out
                       for k in dropped)
    else:
        assert not dropped and len(out) == len(state) + len(heads)
        assert all(torch.equal(out['backbone.' + k[len('beit3.'):]], v)
                   for k, v in state.items())


def test_in1k_file_converted_or_as_init_cfg_is_one_model(tmp_path, ref):
    """A released in1k file gives the same classifier backbone (vision
    experts, fc_norm) converted and loaded with load_checkpoint as through
    init_cfg, and its head is head.fc on both ways."""
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint

    from beit3_mm.models.utils import load_beit3_checkpoint
    state = {
        k: v
        for k, v in ref.state_dict().items()
        if not k.startswith('encoder.layer_norm')
    }
    heads = {
        'fc_norm.weight': 1 + 0.1 * torch.randn(D),
        'fc_norm.bias': 0.1 * torch.randn(D),
        'head.weight': torch.randn(5, D),
        'head.bias': torch.randn(5),
    }
    src = save_released(tmp_path / 'in1k.pth', state, heads)
    dst = str(tmp_path / 'in1k_mm.pth')
    run_tool(CONVERTER, src, dst, cwd=tmp_path)

    cfg = Config.fromfile(
        f'{ROOT}/configs/beit3/classification/'
        'beit3-base-p16_8xb128-coslr-50e_in1k.py')
    cfg.model.backbone.update(
        arch=TINY, img_size=TINY_IMG, vocab_size=VOCAB,
        init_cfg=dict(type='Pretrained', checkpoint=src))
    cfg.model.head.update(num_classes=5, in_channels=D)
    from_init_cfg = build_model(cfg)
    from_init_cfg.init_weights()
    converted = build_model(cfg)
    load_checkpoint(converted, dst, strict=True)

    backbone = converted.backbone.state_dict()
    assert backbone.keys() == from_init_cfg.backbone.state_dict().keys()
    for k, v in from_init_cfg.backbone.state_dict().items():
        assert torch.equal(backbone[k], v), k
    assert torch.equal(backbone['fc_norm.weight'], heads['fc_norm.weight'])
    assert torch.equal(converted.head.fc.weight, heads['head.weight'])
    # the backbone's init_cfg names the head as the converted file does
    lines = load_beit3_checkpoint(from_init_cfg.backbone, src)
    assert 'left out non-backbone keys: head.fc.* (2)' in lines


def test_missing_key_is_an_error_naming_it(tmp_path, ref):
    state = dict(ref.state_dict())
    del state['encoder.layers.1.ffn.A.fc2.weight']
    path = save_released(tmp_path / 'bad.pth', state)
    with pytest.raises(KeyError, match=r'encoder\.layers\.1\.ffn\.A\.fc2'):
        build(path, output_norm=True)


def test_output_norm_missing_from_file_is_an_error(tmp_path, ref):
    state = {
        k: v
        for k, v in ref.state_dict().items()
        if not k.startswith('encoder.layer_norm')
    }
    path = save_released(tmp_path / 'vqa.pth', state)
    with pytest.raises(KeyError, match='encoder.layer_norm'):
        build(path, output_norm=True)


def test_shape_mismatch_is_an_error_naming_it(tmp_path, ref):
    state = dict(ref.state_dict())
    state['encoder.layers.0.ffn.A.fc1.weight'] = torch.zeros(65, 32)
    path = save_released(tmp_path / 'bad.pth', state)
    with pytest.raises(ValueError, match=r'layers\.0\.ffn\.A\.fc1\.weight'):
        build(path, output_norm=True)


def test_deeper_file_is_an_error(tmp_path):
    deeper = torchscale_beit3(dict(TINY, num_layers=3), TINY_IMG)
    path = save_released(tmp_path / 'deep.pth', deeper.state_dict())
    with pytest.raises(KeyError, match=r'encoder\.layers\.2'):
        build(path, output_norm=True)


def test_missing_file_and_non_backbone_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        build(tmp_path / 'nope.pth')
    torch.save({'model': {'head.weight': torch.zeros(2, 2)}},
               tmp_path / 'head.pth')
    with pytest.raises(KeyError, match='no BEiT-3 backbone keys'):
        build(tmp_path / 'head.pth')


class Payload:
    """Unpickling this would run code."""
    ran = False

    def __reduce__(self):
        return (setattr, (Payload, 'ran', True))


def test_arbitrary_objects_are_not_unpickled(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'model': {'x': torch.zeros(1)}, 'extra': Payload()}, path)
    with pytest.raises(RuntimeError, match='refusing to load'):
        read_checkpoint(str(path))
    assert Payload.ran is False
    with open(tmp_path / 'junk.pth', 'wb') as f:
        pickle.dump([1], f)
        f.write(b'garbage')
    with pytest.raises(RuntimeError, match='junk.pth'):
        read_checkpoint(str(tmp_path / 'junk.pth'))


class GetattrPayload:
    """Pickles as getattr(numpy.ndarray, 'tofile'): a gadget."""

    def __reduce__(self):
        import numpy as np
        return (getattr, (np.ndarray, 'tofile'))


def test_mmengine_allow_list_does_not_open_getattr(tmp_path):
    import beit3_mm  # noqa: F401  (installs the mmengine allow-list)
    path = tmp_path / 'gadget.pth'
    torch.save({'state_dict': {}, 'x': GetattrPayload()}, path)
    with pytest.raises(pickle.UnpicklingError, match='not allowed'):
        torch.load(path, weights_only=True)
