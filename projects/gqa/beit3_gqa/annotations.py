"""GQA question files in the layout mmpretrain's ``GQA`` dataset reads.

mmpretrain reads LAVIS's GQA files (``train_balanced_questions.json``,
``testdev_balanced_questions.json``): a JSON list with one item per
question::

    {"image": "2354786.jpg", "question": "Is the sky dark?",
     "question_id": "02930152", "answer": "yes"}

(LAVIS adds ``fullAnswer``; the dataset reads ``image``, ``question`` and
``answer``.) GQA has one answer per question.
"""
import json
import os
import os.path as osp
import re
from collections import Counter
from typing import Dict, List, Sequence, Tuple

from mmpretrain.evaluation.metrics.vqa import (_process_digit_article,
                                               _process_punctuation)

from beit3_mm.datasets import save_answer_list

# GQA split of the demo: the VQA split of the vision-language demo set
DEMO_SPLITS = dict(train='train', testdev='val')


def load_gqa_questions(path: str) -> List[dict]:
    """The items of a GQA question file; the first one must have the
    fields the dataset reads."""
    with open(path) as f:
        items = json.load(f)
    if not isinstance(items, list):
        raise ValueError(
            f'{path} is not a LAVIS-style GQA file (a JSON list); the '
            f'official GQA release keys questions by id: use the LAVIS '
            f'annotation files that mmpretrain links in its GQA dataset')
    for item in items[:1]:
        missing = {'image', 'question', 'answer'} - set(item)
        if missing:
            raise KeyError(f'{path}: GQA items need {sorted(missing)}')
    return items


def build_gqa_answer_list(question_files: Sequence[str],
                          min_count: int = 1) -> List[str]:
    """The answer vocabulary of GQA question files: every answer given to
    at least ``min_count`` questions, in order of first occurrence.

    Answers are kept as written, which is how the model's targets look
    them up; ``GQAAcc`` normalises prediction and ground truth alike.
    """
    counts = Counter(item['answer'] for path in question_files
                     for item in load_gqa_questions(path))
    return [a for a, n in counts.items() if n >= min_count]


def _gqa_normalize(answer: str) -> str:
    """The answer normalisation of mmpretrain's ``GQAAcc``."""
    return _process_digit_article(_process_punctuation(answer))


def majority_baseline(train_file: str, test_file: str) -> Tuple[str, float]:
    """The most frequent training answer and the ``GQAAcc`` (a fraction)
    of answering it to every question of ``test_file``."""
    train = Counter(item['answer'] for item in load_gqa_questions(train_file))
    answer = _gqa_normalize(train.most_common(1)[0][0])
    test = load_gqa_questions(test_file)
    hits = sum(_gqa_normalize(item['answer']) == answer for item in test)
    return answer, hits / len(test)


def vqa_to_gqa(question_file: str,
               annotation_file: str,
               image_dir: str,
               image_prefix: str = '') -> List[dict]:
    """VQAv2-format questions and annotations as GQA items.

    The answer is the ``multiple_choice_answer`` (the annotators'
    majority); the image is found in ``image_dir`` by the 12-digit id in
    its file name (as mmpretrain's ``COCOVQA`` does) and written as
    ``image_prefix + file name``.
    """
    with open(question_file) as f:
        questions = json.load(f)['questions']
    with open(annotation_file) as f:
        answers: Dict[int, str] = {
            ann['question_id']: ann['multiple_choice_answer']
            for ann in json.load(f)['annotations']
        }
    images = {}
    for name in sorted(os.listdir(image_dir)):
        ids = re.findall(r'\d{12}', name)
        if ids:
            images[int(ids[-1])] = name
    items = []
    for q in questions:
        if q['image_id'] not in images:
            raise FileNotFoundError(f'no image of id {q["image_id"]} in '
                                    f'{image_dir}')
        items.append(
            dict(
                image=image_prefix + images[q['image_id']],
                question=q['question'],
                question_id=str(q['question_id']),
                answer=answers[q['question_id']]))
    return items


def save_gqa_questions(items: List[dict], path: str) -> str:
    """Write GQA items to ``path``."""
    if osp.dirname(path):
        os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(items, f)
    return path


def make_gqa_demo(root: str, out: str = 'gqa') -> Dict[str, str]:
    """Write the VQA part of the vision-language demo set at ``root``
    (:func:`beit3_mm.demo.make_vl_demo`) as a GQA set under
    ``root/out``: ``{train,testdev}_balanced_questions.json`` (from the VQA
    train / val splits, images as ``<split>/<file name>`` under
    ``root/images``) and ``answer2label.txt`` (the train answers).

    Returns:
        Paths relative to ``root``: ``train``, ``testdev`` and
        ``answer_list``.
    """
    files = {}
    for gqa_split, vqa_split in DEMO_SPLITS.items():
        items = vqa_to_gqa(
            osp.join(root, f'annotations/vqa_{vqa_split}_questions.json'),
            osp.join(root, f'annotations/vqa_{vqa_split}_annotations.json'),
            osp.join(root, 'images', vqa_split),
            image_prefix=vqa_split + '/')
        files[gqa_split] = osp.join(out,
                                    f'{gqa_split}_balanced_questions.json')
        save_gqa_questions(items, osp.join(root, files[gqa_split]))
    files['answer_list'] = osp.join(out, 'answer2label.txt')
    save_answer_list(
        build_gqa_answer_list([osp.join(root, files['train'])]),
        osp.join(root, files['answer_list']))
    return files
