"""Local `evaluate` modules (load with ``evaluate.load(str(HML_METRICS_PATH))``)."""

from pathlib import Path

HML_METRICS_PATH = Path(__file__).resolve().parent / "hml_metrics"
