# BEiT-3 large VQAv2 at 768 as the released in-domain file (82.97 test-dev;
# command unpublished): the large 480 recipe, its pipelines at 768 (10 px
# translation), on VQAv2 train + val and Visual Genome QA; test-dev only.
_base_ = ['./beit3-large-p16_vqa_8xb16-10e_vqav2-480px.py']

model = dict(backbone=dict(img_size=768), init_cfg=dict(
    checkpoint='checkpoints/beit3_large_indomain_patch16_224.pth'))
train_pipeline = [
    dict(t, scale=768) if 'scale' in t else dict(t, policies=[
        dict(p, magnitude_range=(0, 10 / 768)) if p.type == 'Translate' else p
        for p in t.policies]) if t.type == 'RandAugment' else t
    for t in _base_.train_pipeline]
test_pipeline = [dict(t, scale=(768, 768)) if 'scale' in t else t
                 for t in _base_.test_pipeline]
train_dataloader = dict(dataset=dict(
    _delete_=True, type='ConcatDataset', datasets=[
    dict(d, pipeline=train_pipeline)
    for d in (_base_.train_dataloader.dataset, _base_.val_dataloader.dataset,
              dict(type='VisualGenomeQA', data_root='data/visual_genome',
                   data_prefix='image', ann_file='question_answers.json'))]))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline, question_file=(
    'annotations/v2_OpenEnded_mscoco_test-dev2015_questions.json')))
val_dataloader = val_evaluator = val_cfg = None
default_hooks = dict(checkpoint=dict(save_best=None))
