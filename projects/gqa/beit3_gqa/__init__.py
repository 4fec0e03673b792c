"""GQA annotation helpers of the GQA project: the answer vocabulary, the
majority-answer baseline and the demo converter (VQAv2 -> GQA)."""
from .annotations import (build_gqa_answer_list, load_gqa_questions,
                          majority_baseline, make_gqa_demo, save_gqa_questions,
                          vqa_to_gqa)

__all__ = [
    'build_gqa_answer_list', 'load_gqa_questions', 'majority_baseline',
    'make_gqa_demo', 'save_gqa_questions', 'vqa_to_gqa'
]
