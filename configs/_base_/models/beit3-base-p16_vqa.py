# BEiT3VQA, the official BEiT3ForVisualQuestionAnswering, base, at 480 from
# the pretraining file, drop path 0.1, no output norm, 3129 answers.
_base_ = ['./beit3-base-p16_multimodal.py']

model = dict(
    type='BEiT3VQA',
    backbone=dict(img_size=480, drop_path_rate=0.1, output_norm=False),
    # build it with tools/misc/build_vqa_answer_list.py (official order)
    answer_list='data/coco/annotations/answer2label.txt')
