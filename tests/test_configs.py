"""Every config listed in the metafile exists and loads."""
import os.path as osp

import yaml
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_metafile_configs_load():
    with open(osp.join(ROOT, 'configs/beit3/metafile.yml')) as f:
        meta = yaml.safe_load(f)
    assert meta['Models']
    for model in meta['Models']:
        cfg = Config.fromfile(osp.join(ROOT, model['Config']))
        assert cfg.model.backbone.type.startswith('BEiT3')
        assert osp.basename(model['Config'])[:-3] == model['Name']
