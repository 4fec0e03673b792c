# BEiT3VQA, the official BEiT3ForVisualQuestionAnswering, base, at 480 from
# the pretraining file (the 224 position table is resized on loading), drop
# path 0.1, 3129 answers.
custom_imports = dict(imports=['beit3_mm'], allow_failed_imports=False)

model = dict(
    type='BEiT3VQA',
    backbone=dict(
        type='BEiT3',
        arch='base',
        img_size=480,
        drop_path_rate=0.1,
        output_norm=False),  # the VQA models have no output norm
    tokenizer=dict(type='BEiT3Tokenizer', name_or_path='data/beit3.spm'),
    max_text_len=64,
    # build it with tools/misc/build_vqa_answer_list.py (official order)
    answer_list='data/coco/annotations/answer2label.txt',
    init_cfg=dict(
        type='Pretrained',
        checkpoint='checkpoints/beit3_base_patch16_224.pth'))
