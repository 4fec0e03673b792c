"""Wrong weights never load silently: a released file, a BEiT-3 of another
size, another model or another task's checkpoint stops with one line that
names the file and the fix; legitimate loads still work."""
import os.path as osp
import re
from types import SimpleNamespace

import pytest
import torch
from helpers import CONVERTER, ROOT, build_model, run_tool, save_released
from mmengine.config import Config
from mmengine.runner import load_checkpoint
from mmengine.runner.checkpoint import _load_checkpoint

from beit3_mm.demo import make_classification_demo, make_vl_demo
from beit3_mm.engine.hooks import CheckpointCheckHook
from beit3_mm.models import BEiT3
from beit3_mm.models.utils import CheckpointMismatchError

CLS_CFG = osp.join(
    ROOT, 'configs/beit3/classification/'
    'beit3-tiny-p8_1xb32-40e_demo-shapes.py')
DET_CFG = osp.join(
    ROOT, 'configs/beit3/detection/'
    'beit3-tiny-p16_mask-rcnn_simplefpn_1xb4-12e_demo-shapes.py')
VQA_CFG = osp.join(ROOT,
                   'configs/beit3/vqa/beit3-tiny-p8_vqa_1xb32-15e_demo-vl.py')
NLVR2_CFG = osp.join(
    ROOT, 'configs/beit3/nlvr2/beit3-tiny-p8_nlvr2_1xb32-20e_demo-vl.py')
# the classification demo's backbone
CLS_ARCH = dict(embed_dims=64, num_layers=4, num_heads=4,
                feedforward_channels=128, patch_size=8)


@pytest.fixture(scope='module')
def released(tmp_path_factory):
    """A released in1k file (``{'model': {'beit3.*', 'fc_norm.*',
    'head.*'}}``) of the classification demo's arch, 4 classes."""
    backbone = BEiT3(arch=CLS_ARCH, img_size=32, out_type='raw')
    heads = {
        'fc_norm.weight': torch.ones(64),
        'fc_norm.bias': torch.zeros(64),
        'head.weight': torch.randn(4, 64),
        'head.bias': torch.zeros(4),
    }
    path = tmp_path_factory.mktemp('released') / 'beit3_tiny_in1k.pth'
    return save_released(path, backbone.state_dict(), heads)


@pytest.fixture
def cls_model():
    return build_model(Config.fromfile(CLS_CFG))


def mismatch(load) -> str:
    """The message of the CheckpointMismatchError that ``load()`` raises."""
    with pytest.raises(CheckpointMismatchError) as info:
        load()
    message = str(info.value)
    assert '\n' not in message, message
    return message


def test_released_file(cls_model, released):
    message = mismatch(lambda: load_checkpoint(cls_model, released))
    assert released in message and 'released' in message, message
    assert f'beit3_to_mm.py {released} OUT.pth' in message, message
    assert 'init_cfg' in message, message


def test_beit3_of_another_size(cls_model, tmp_path):
    small = BEiT3(arch=dict(CLS_ARCH, embed_dims=32, feedforward_channels=64),
                  img_size=32, with_language=False)
    path = str(tmp_path / 'epoch_1.pth')
    state = {'backbone.' + k: v for k, v in small.state_dict().items()}
    torch.save(dict(state_dict=state, meta=dict()), path)
    message = mismatch(lambda: load_checkpoint(cls_model, path))
    assert path in message and 'another size' in message, message
    assert 'cls_token: (1, 1, 32) there, (1, 1, 64) here' in message, message


def test_another_model(cls_model, tmp_path):
    path = str(tmp_path / 'resnet.pth')
    torch.save(
        dict(state_dict={
            'backbone.conv1.weight': torch.zeros(8, 3, 7, 7),
            'backbone.layer1.0.conv1.weight': torch.zeros(8, 8, 3, 3),
            'neck.fc.weight': torch.zeros(4, 8),
            'head.fc.weight': torch.zeros(4, 8),
        }), path)
    message = mismatch(lambda: load_checkpoint(cls_model, path))
    assert path in message and 'another model' in message, message
    assert 'its modules: backbone, head, neck' in message, message


def test_a_state_dict_not_from_a_file(cls_model):
    message = mismatch(lambda: cls_model.load_state_dict(
        {'backbone.foo': torch.zeros(1)}, strict=False))
    assert message.startswith('the state dict'), message


def test_legitimate_loads(cls_model, released, tmp_path):
    # a released file as the backbone's init_cfg
    backbone = BEiT3(arch=CLS_ARCH, img_size=32, with_language=False,
                     init_cfg=dict(type='Pretrained', checkpoint=released))
    backbone.init_weights()
    # the same file converted, loaded strictly
    dst = str(tmp_path / 'converted.pth')
    run_tool(CONVERTER, released, dst, cwd=tmp_path)
    load_checkpoint(cls_model, dst, strict=True)
    # a beit3-mm checkpoint of the model itself
    path = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(state_dict=cls_model.state_dict()), path)
    load_checkpoint(build_model(Config.fromfile(CLS_CFG)), path, strict=True)


def test_inferencers_refuse_a_released_file(released):
    from mmdet.apis import DetInferencer
    from mmpretrain import ImageClassificationInferencer
    message = mismatch(lambda: ImageClassificationInferencer(
        model=CLS_CFG, pretrained=released, device='cpu'))
    assert 'released' in message and 'beit3_to_mm.py' in message
    message = mismatch(lambda: DetInferencer(
        model=DET_CFG, weights=released, device='cpu', show_progress=False))
    assert 'released' in message and 'beit3_to_mm.py' in message


class TwoModules(torch.nn.Module):

    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Linear(2, 2)
        self.head = torch.nn.Linear(2, 3)


@pytest.mark.parametrize('train_loop, resume, refused', [
    (None, False, True),  # tools/test.py: no train loop
    (dict(type='EpochBasedTrainLoop'), False, True),  # train loop not built
    (object(), True, True),  # resuming a training run
    (object(), False, False),  # load_from of a training run
])
def test_hook_refuses_another_task_to_test_or_resume(tmp_path, train_loop,
                                                     resume, refused):
    path = str(tmp_path / 'other_task.pth')
    torch.save(
        dict(state_dict={
            'backbone.weight': torch.zeros(2, 2),
            'backbone.bias': torch.zeros(2),
            'pooler.weight': torch.zeros(2, 2),
        }), path)
    runner = SimpleNamespace(
        model=TwoModules(), _train_loop=train_loop, _resume=resume)
    hook = CheckpointCheckHook()
    checkpoint = _load_checkpoint(path)
    if not refused:
        hook.after_load_checkpoint(runner, checkpoint)
        return
    message = mismatch(lambda: hook.after_load_checkpoint(runner, checkpoint))
    assert path in message and 'another task' in message, message
    assert 'its modules: backbone, pooler' in message, message
    assert 'also has head' in message, message
    # all modules there, or none (the backbone's check names the file)
    full = dict(state_dict=TwoModules().state_dict())
    hook.after_load_checkpoint(runner, full)
    hook.after_load_checkpoint(runner, dict(state_dict={'x': torch.ones(1)}))


# ----------------------------------------------------- end to end (tools)
@pytest.fixture(scope='module')
def vl_demo(tmp_path_factory):
    """The VL demo set under data/demo_vl (where the demo configs read
    it) and a VQA checkpoint trained on it for one epoch."""
    root = tmp_path_factory.mktemp('vl')
    make_vl_demo(str(root / 'data/demo_vl'), num_train=8, num_val=4,
                 num_train_pairs=4, num_val_pairs=2, vocab_size=60)
    run_tool(osp.join(ROOT, 'tools/train.py'), VQA_CFG, '--work-dir',
             'vqa', '--cfg-options', 'train_cfg.max_epochs=1', cwd=root)
    return root, str(root / 'vqa/epoch_1.pth')


@pytest.mark.slow
def test_train_load_from_a_released_file(tmp_path, released):
    make_classification_demo(str(tmp_path / 'data/demo_cls'), num_train=4,
                             num_val=2)
    out = run_tool(
        osp.join(ROOT, 'tools/train.py'), CLS_CFG,
        '--work-dir', 'work', '--cfg-options', f'load_from={released}',
        'train_cfg.max_epochs=1', cwd=tmp_path, ok=False)
    last = out.strip().splitlines()[-1]
    assert 'CheckpointMismatchError' in last, out[-3000:]
    assert released in last and 'released' in last, last
    assert 'beit3_to_mm.py' in last, last


@pytest.mark.slow
def test_test_another_tasks_checkpoint(vl_demo):
    root, vqa_ckpt = vl_demo
    out = run_tool(
        osp.join(ROOT, 'tools/test.py'), NLVR2_CFG, vqa_ckpt,
        '--work-dir', 'test', cwd=root, ok=False)
    last = out.strip().splitlines()[-1]
    assert vqa_ckpt in last and 'another task' in last, out[-3000:]
    assert 'its modules: backbone, head, pooler' in last, last


@pytest.mark.slow
def test_resume_another_tasks_checkpoint(vl_demo):
    root, vqa_ckpt = vl_demo
    out = run_tool(
        osp.join(ROOT, 'tools/train.py'), NLVR2_CFG,
        '--work-dir', 'resume', '--resume', vqa_ckpt, '--cfg-options',
        'train_dataloader.batch_size=2', cwd=root, ok=False)
    last = out.strip().splitlines()[-1]
    assert vqa_ckpt in last and 'another task' in last, out[-3000:]


@pytest.mark.slow
def test_train_load_from_another_tasks_checkpoint(vl_demo):
    """Fine-tuning NLVR2 from a VQA checkpoint: the backbone loads, the
    new head is only logged."""
    root, vqa_ckpt = vl_demo
    out = run_tool(
        osp.join(ROOT, 'tools/train.py'), NLVR2_CFG,
        '--work-dir', 'finetune', '--cfg-options', f'load_from={vqa_ckpt}',
        'train_cfg.max_epochs=1', 'train_dataloader.batch_size=2', cwd=root)
    assert f'Load checkpoint from {vqa_ckpt}' in out
    assert re.search(r'missing keys in source state_dict: .*head\.dense1',
                     out), out[-3000:]
