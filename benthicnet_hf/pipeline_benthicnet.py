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
    without ``probabilities`` fall back to the parent's behaviour.
    """

    def postprocess(self, model_outputs: Any, function_to_apply: Any = None, top_k: int = 5):
        probs = model_outputs.get("probabilities") if hasattr(model_outputs, "get") else None
        if probs is None:
            return super().postprocess(model_outputs, function_to_apply=function_to_apply, top_k=top_k)
        scores = probs[0].float().numpy()
        order = np.argsort(-scores, kind="stable")
        trained = self.model.config.trained_nodes() if hasattr(self.model.config, "trained_nodes") else None
        if trained is not None:  # nodes never seen positive in training are not offered as answers
            order = order[np.asarray(trained, dtype=bool)[order]]
        order = order[:max(0, int(top_k))]
        id2label = self.model.config.id2label
        return [{"label": id2label[int(i)], "score": float(scores[i])} for i in order]
