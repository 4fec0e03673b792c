"""NoCaps caption scores: overall and per domain, and the EvalAI file."""
from typing import Dict, List

from beit3_mm.registry import METRICS

from .caption import CaptionMetric, score_captions

DOMAINS = ('in-domain', 'near-domain', 'out-domain')


@METRICS.register_module()
class NoCapsMetric(CaptionMetric):
    """NoCaps scores with the standard domain breakdown.

    :class:`CaptionMetric`'s scores over all images plus ``{domain}_CIDEr``
    (and ``{domain}_SPICE`` with ``with_spice``) for the in-domain,
    near-domain and out-domain images, each domain scored on its own as the
    evaluation server does. ``ann_file`` is ``nocaps_val_4500_captions.json``
    (``images[*].domain``); for test, ``format_only=True`` writes the
    submission file for the EvalAI server (``{outfile_prefix}.caption.json``).
    Arguments as :class:`CaptionMetric`; the prefix defaults to 'nocaps'.
    """
    default_prefix = 'nocaps'

    def score_tokenized(self, gts: Dict[int, List[str]],
                        res: Dict[int, List[str]], gt: dict,
                        metrics: List[str]) -> Dict[str, float]:
        """Overall scores, then CIDEr (and SPICE) per domain."""
        domains = {
            img['id']: img.get('domain')
            for img in gt.get('images', [])
        }
        if not any(domains.values()):
            raise ValueError(f'{type(self).__name__}: {self.ann_file} has no '
                             'images[*].domain; use the nocaps json (e.g. '
                             'nocaps_val_4500_captions.json) or CaptionMetric')
        scores = super().score_tokenized(gts, res, gt, metrics)
        per_domain = [m for m in metrics if m in ('CIDEr', 'SPICE')]
        for domain in DOMAINS:
            ids = [k for k in gts if domains.get(k) == domain]
            if ids:
                part = score_captions({k: gts[k] for k in ids},
                                      {k: res[k] for k in ids}, per_domain)
                scores.update({f'{domain}_{k}': v for k, v in part.items()})
        return scores
