"""The VQAv2 answer vocabulary and soft scores, the official BEiT-3 way.

The released VQA heads score the answers of the official
``answer2label.txt`` (3129 answers, in its order): the
``multiple_choice_answer`` of every train2014 and val2014 annotation,
normalised as in ViLT (``normalize_word``), kept when it occurs at least 9
times, in order of first occurrence (unilm/beit3 ``datasets.py``,
``VQAv2Dataset.make_dataset_index``). :func:`build_answer_list` reproduces
that list, :func:`save_answer_list` writes it in the official file format
and :func:`load_answer_list` reads that format, a plain text file (one
answer per line) or a JSON list.
"""
import json
import os
import os.path as osp
from collections import Counter
from typing import List, Sequence

# The official code scores an answer given by n of the (10) annotators
# with VQA_SCORES[min(n, 4)] (``VQAv2Dataset.get_score``).
VQA_SCORES = (0.0, 0.3, 0.6, 0.9, 1.0)
OFFICIAL_MIN_COUNT = 9


def vqa_soft_score(count: int) -> float:
    """Soft target of an answer given by ``count`` annotators."""
    return VQA_SCORES[min(max(int(count), 0), len(VQA_SCORES) - 1)]


def normalize_answer(answer: str) -> str:
    """ViLT's ``normalize_word``, which the official code applies to the
    ``multiple_choice_answer`` before counting: the VQA evaluation's
    punctuation, digit and article processing (as in mmpretrain's
    ``VQAAcc``), then commas removed."""
    from mmpretrain.evaluation.metrics.vqa import (_process_digit_article,
                                                   _process_punctuation)
    return _process_digit_article(_process_punctuation(answer)).replace(
        ',', '')


def build_answer_list(annotation_files: Sequence[str],
                      min_count: int = OFFICIAL_MIN_COUNT) -> List[str]:
    """The answer vocabulary of VQAv2 annotation files.

    Args:
        annotation_files: VQAv2 annotation files (``{"annotations": [...]}``,
            e.g. ``v2_mscoco_train2014_annotations.json`` then
            ``v2_mscoco_val2014_annotations.json``: the order decides the
            answer order).
        min_count: keep the normalised answers that are the
            ``multiple_choice_answer`` of at least this many questions.
            Defaults to the official 9.

    Returns:
        The answers, in order of first occurrence.
    """
    majors = []
    for path in annotation_files:
        with open(path) as f:
            data = json.load(f)
        if 'annotations' not in data:
            raise KeyError(f'{path} is not a VQAv2 annotation file (no '
                           f'"annotations"; a question file?)')
        majors += [ann['multiple_choice_answer'] for ann in data['annotations']]
    counts = Counter(normalize_answer(a) for a in majors)
    return [a for a, n in counts.items() if n >= min_count]


def save_answer_list(answers: Sequence[str], path: str) -> str:
    """Write ``answers`` as the official ``answer2label.txt``: one JSON
    object ``{"answer": ..., "label": i}`` per line."""
    if osp.dirname(path):
        os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        for i, answer in enumerate(answers):
            f.write(json.dumps(dict(answer=answer, label=i)) + '\n')
    return path


def load_answer_list(path: str) -> List[str]:
    """Read an answer list: the official ``answer2label.txt`` (JSON lines
    with ``answer`` and ``label``), a JSON list, or plain text with one
    answer per line. Line / list order is the label order."""
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'VQA answer list {path!r} not found: build it from the VQAv2 '
            f'annotations with tools/misc/build_vqa_answer_list.py (or use '
            f"the official answer2label.txt) and set the model's "
            f'answer_list to its path')
    with open(path, encoding='utf-8') as f:
        text = f.read()
    if path.endswith('.json'):
        answers = json.loads(text)
        if not (isinstance(answers, list)
                and all(isinstance(a, str) for a in answers)):
            raise ValueError(f'{path}: a .json answer list must be a list of '
                             f'strings')
    else:
        lines = [line for line in text.splitlines() if line.strip()]
        if lines and lines[0].lstrip().startswith('{'):
            answers = []
            for i, line in enumerate(lines):
                item = json.loads(line)
                if int(item['label']) != i:
                    raise ValueError(f'{path}: line {i + 1} has label '
                                     f'{item["label"]}, expected {i}')
                answers.append(item['answer'])
        else:
            answers = [line.strip() for line in lines]
    if not answers:
        raise ValueError(f'VQA answer list {path!r} is empty')
    duplicates = [a for a, n in Counter(answers).items() if n > 1]
    if duplicates:
        raise ValueError(f'{path}: repeated answers {duplicates[:5]}')
    return answers

