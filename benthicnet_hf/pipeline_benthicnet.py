"""An image-classification pipeline that reports **coherent** node scores.

The stock ``ImageClassificationPipeline`` applies a sigmoid to ``outputs.logits``, the raw per-node
logits, which may score a child above its parent. This subclass reports
``outputs.probabilities`` instead: ``sigmoid(MCM(logits))`` from the model, where no child scores
above any of its ancestors. Saved models name it in ``config.custom_pipelines``, so
``pipeline("image-classification", model=dir, trust_remote_code=True)`` picks it up.

Remote-code safe: imports only installed packages.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from transformers import ImageClassificationPipeline

#: what a saved model's config.json gets as ``custom_pipelines`` (the pipeline file is copied along).
CUSTOM_PIPELINES = {
    "image-classification": {
        "impl": "pipeline_benthicnet.BenthicNetImageClassificationPipeline",
        "pt": ["AutoModelForImageClassification"],
        "type": "image",
    }
}


class BenthicNetImageClassificationPipeline(ImageClassificationPipeline):
    """``ImageClassificationPipeline`` over the model's coherent probabilities.

    Returns per image a list of ``{"label": "head: key", "score": p}`` sorted by score, ``top_k``
    long (5 by default, as in transformers; ``top_k=config.num_labels`` for all nodes). Nodes
    without a positive training example (``config.trained_nodes()``) are left out. Models
    without ``probabilities`` fall back to the parent's behaviour. With ``predicted_only=True`` only
    the predicted nodes are listed: score above the node's threshold (``config.node_thresholds``,
    tuned on the validation split; else 0.5), plus their ancestors (coherent paths, as
    ``prediction.predict_paths``). Scores are calibrated when the config has ``head_temperatures``.
    """

    def _sanitize_parameters(self, predicted_only: bool | None = None, **kwargs: Any):
        pre, fwd, post = super()._sanitize_parameters(**kwargs)
        if predicted_only is not None:
            post["predicted_only"] = bool(predicted_only)
        return pre, fwd, post

    def postprocess(self, model_outputs: Any, function_to_apply: Any = None, top_k: int = 5,
                    predicted_only: bool = False):
        probs = model_outputs.get("probabilities") if hasattr(model_outputs, "get") else None
        if probs is None:
            return super().postprocess(model_outputs, function_to_apply=function_to_apply, top_k=top_k)
        scores = probs[0].float().numpy()
        order = np.argsort(-scores, kind="stable")
        trained = self.model.config.trained_nodes() if hasattr(self.model.config, "trained_nodes") else None
        if trained is not None:  # nodes never seen positive in training are not offered as answers
            order = order[np.asarray(trained, dtype=bool)[order]]
        if predicted_only:
            order = order[self._predicted(scores)[order]]
        order = order[:max(0, int(top_k))]
        id2label = self.model.config.id2label
        return [{"label": id2label[int(i)], "score": float(scores[i])} for i in order]

    def _predicted(self, scores: np.ndarray) -> np.ndarray:
        """``(N,)`` bool: ``scores > config.node_thresholds`` (else 0.5), closed under ancestors."""
        config = self.model.config
        thresholds = getattr(config, "node_thresholds", None)
        over = scores > (0.5 if thresholds is None else np.asarray(thresholds, dtype=np.float64))
        ancestors = config.get_hierarchy().ancestors_padded[over]  # (predicted, A), -1 padded
        out = np.zeros_like(over)
        out[ancestors[ancestors >= 0]] = True
        return out
