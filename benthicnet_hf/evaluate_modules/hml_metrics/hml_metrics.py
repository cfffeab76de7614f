"""HML metrics as an `evaluate` module: a thin wrapper over benthicnet_hf.metrics.compute_metrics.

Load it offline from its folder:

    import evaluate
    metric = evaluate.load("path/to/benthicnet_hf/evaluate_modules/hml_metrics")
    metric.compute(predictions=probs, references=targets, mask=mask, hierarchy=hierarchy)

(One import per line below: evaluate's import scanner misreads ``import a, b``.)
"""

import datasets
import evaluate
import numpy as np

from benthicnet_hf.hierarchy import Hierarchy
from benthicnet_hf.metrics import compute_metrics

_DESCRIPTION = """Dataset-level, masked metrics for hierarchical multi-label classification: micro/macro AP,
the BenthicNet paper's HML AP / HML F1 and singular P/R/F1 (its evaluation notebook's protocol),
per-sample AP per depth (sample_ap), thresholded AP, F1, bit F1, exact match per depth, per-level P/R/F1,
per head and overall, over known (mask = 1) bits only. A head without both a known positive and a known
negative bit is NaN (not evaluable) and left out of overall."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: (rows, nodes) coherent probabilities in [0, 1].
    references: (rows, nodes) targets in {0, 1}.
    mask: (rows, nodes) in {0, 1}, 1 = known.
    hierarchy: a benthicnet_hf Hierarchy (or its JSON text) giving the node layout.
    threshold: decision threshold (default 0.5).
Returns:
    {"scope/metric": float} with scope "overall" or a head name.
"""

_CITATION = """@article{xu2024hierarchical,
  title={Hierarchical Multi-Label Classification with Missing Information for Benthic Habitat Imagery},
  author={Xu, Isaac and Misiuk, Benjamin and Lowe, Scott C. and Gillis, Martin and Brown, Craig J. and Trappenberg, Thomas},
  journal={arXiv preprint arXiv:2409.06618},
  year={2024}
}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class HmlMetrics(evaluate.Metric):
    """Wrapper: all figures come from benthicnet_hf.metrics.compute_metrics."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Value("float32")),
                "references": datasets.Sequence(datasets.Value("int8")),
                "mask": datasets.Sequence(datasets.Value("int8")),
            }),
        )

    def _compute(self, predictions, references, mask, hierarchy=None, threshold=0.5):
        if hierarchy is None:
            raise ValueError("pass hierarchy=<benthicnet_hf Hierarchy or its JSON> to compute()")
        if not isinstance(hierarchy, Hierarchy):
            hierarchy = Hierarchy.from_json(hierarchy)
        return compute_metrics(
            np.asarray(predictions, dtype=np.float32), np.asarray(references, dtype=np.uint8),
            np.asarray(mask, dtype=np.uint8), hierarchy, threshold=threshold,
        )
