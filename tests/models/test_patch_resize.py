"""Loading a BEiT-3 of another patch size: FlexiViT's patch-kernel resize in
the backbone's one load path (e.g. a patch-14 giant into the patch-16
detector)."""
import pytest
import torch
import torch.nn.functional as F
from helpers import TINY, VOCAB, official_resize
from mmengine.runner import load_checkpoint
from timm.layers import resample_patch_embed

from beit3_mm.models import BEiT3
from beit3_mm.models.utils import (CheckpointMismatchError,
                                   resize_patch_kernel, weight_loading)

KERNEL = 'vision_embed.proj.weight'
POS = 'encoder.embed_positions.A.weight'


@pytest.fixture(autouse=True)
def no_grad():
    with torch.no_grad():
        yield


def tiny(patch_size: int, img_size: int, **kwargs) -> BEiT3:
    return BEiT3(arch=dict(TINY, patch_size=patch_size), img_size=img_size,
                 vocab_size=VOCAB, out_type='raw', **kwargs).eval()


@pytest.fixture(scope='module')
def p14():
    """A patch-14 backbone on a 4 x 4 grid."""
    torch.manual_seed(0)
    return tiny(14, 56)


def resize_patches(images: torch.Tensor, src: int, dst: int) -> torch.Tensor:
    """Each src x src patch of (B, C, H, W) resized to dst x dst, bicubic
    with antialias (the resize FlexiViT inverts)."""
    B, C, H, W = images.shape
    h, w = H // src, W // src
    patches = images.reshape(B, C, h, src, w, src).permute(0, 2, 4, 1, 3, 5)
    patches = F.interpolate(
        patches.reshape(-1, C, src, src), size=(dst, dst), mode='bicubic',
        antialias=True, align_corners=False)
    return patches.reshape(B, h, w, C, dst, dst).permute(
        0, 3, 1, 4, 2, 5).reshape(B, C, h * dst, w * dst)


@pytest.mark.parametrize('src,dst', [(14, 16), (16, 14)])
def test_kernel_is_timms_resample(src, dst):
    kernel = torch.randn(8, 3, src, src)
    torch.testing.assert_close(
        resize_patch_kernel(kernel, dst),
        resample_patch_embed(kernel, [dst, dst]), rtol=1e-4, atol=1e-4)


def test_resized_model_sees_resized_image_as_the_original(p14):
    """FlexiViT: the patch-16 model on the image with every patch enlarged
    to 16 gives the patch-14 model's output on the original image (the same
    grid, so the same position table)."""
    p16 = tiny(16, 64)
    p16.load_state_dict(p14.state_dict())
    images = torch.randn(2, 3, 56, 56)
    resized = resize_patches(images, 14, 16)
    torch.testing.assert_close(
        p16.vision_embed.proj(resized), p14.vision_embed.proj(images),
        rtol=0, atol=1e-4)
    torch.testing.assert_close(
        p16.encode(images=resized), p14.encode(images=images),
        rtol=0, atol=1e-4)
    # a smooth image resized whole by 16 / 14: close (0.4 % here)
    smooth = F.interpolate(torch.randn(2, 3, 7, 7), size=(56, 56),
                           mode='bicubic', align_corners=False)
    whole = F.interpolate(smooth, size=(64, 64), mode='bicubic',
                          antialias=True, align_corners=False)
    expected = p14.vision_embed.proj(smooth)
    error = p16.vision_embed.proj(whole) - expected
    assert error.norm() < 0.02 * expected.norm()
    # interpolating the kernel itself (no pseudo-inverse) does not
    naive = F.interpolate(p14.vision_embed.proj.weight, size=(16, 16),
                          mode='bicubic', align_corners=False)
    naive_out = F.conv2d(resized, naive, p14.vision_embed.proj.bias, 16)
    assert (naive_out - p14.vision_embed.proj(images)).abs().max() > 0.1


def test_load_checkpoint_resizes_kernel_and_table(tmp_path, p14,
                                                  monkeypatch):
    """mmengine's load_checkpoint (as load_from, resume) into patch 16 on a
    2 x 2 grid: the kernel by FlexiViT, the table to the new grid, logged."""
    path = tmp_path / 'p14.pth'
    torch.save({'state_dict': p14.state_dict()}, path)
    logged = []
    monkeypatch.setattr(weight_loading, 'print_log',
                        lambda msg, **kw: logged.append(msg))
    p16 = tiny(16, 32)
    load_checkpoint(p16, str(path), strict=True)
    source = p14.state_dict()
    torch.testing.assert_close(
        p16.state_dict()[KERNEL], resize_patch_kernel(source[KERNEL], 16),
        rtol=0, atol=0)
    torch.testing.assert_close(
        p16.state_dict()[POS], official_resize(source[POS], 2), rtol=0,
        atol=0)
    assert logged == [
        'BEiT3: patch embedding kernel resized from patch 14 to 16 '
        '(FlexiViT pseudo-inverse)',
        'BEiT3: vision position table resized from grid (4, 4) to (2, 2)',
    ]
    p16.encode(images=torch.randn(1, 3, 32, 32))  # runs at the new size


def test_init_cfg_loads_the_same(tmp_path, p14):
    path = tmp_path / 'p14.pth'
    torch.save({
        'state_dict': {'backbone.' + k: v for k, v in p14.state_dict().items()}
    }, path)
    p16 = tiny(16, 32, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    p16.init_weights()
    expected = tiny(16, 32)
    expected.load_state_dict(p14.state_dict())
    for k, v in expected.state_dict().items():
        torch.testing.assert_close(p16.state_dict()[k], v, rtol=0, atol=0)


@pytest.mark.parametrize('key,shape', [
    (KERNEL, (32, 3, 14, 12)),  # not square
    (KERNEL, (32, 1, 14, 14)),  # other input channels
    ('text_embed.weight', (VOCAB + 1, 32)),
])
def test_other_shapes_still_refused(tmp_path, p14, key, shape):
    state = {'backbone.' + k: v for k, v in p14.state_dict().items()}
    state['backbone.' + key] = torch.zeros(shape)
    path = tmp_path / 'bad.pth'
    torch.save({'state_dict': state}, path)
    model = tiny(16, 32,
                 init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointMismatchError, match=key.replace('.', r'\.')):
        model.init_weights()
