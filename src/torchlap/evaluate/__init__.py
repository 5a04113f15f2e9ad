"""Evaluation: ``torchlap evaluate`` (one run) and ``torchlap compare`` (several runs)."""

from torchlap.evaluate.common import METRICS_REVISION
from torchlap.evaluate.compare import compare_runs
from torchlap.evaluate.core import (
    DEFAULT_METHODS,
    EvalData,
    EvaluateOptions,
    evaluate_run,
    load_eval_data,
)

__all__ = [
    "DEFAULT_METHODS",
    "METRICS_REVISION",
    "EvalData",
    "EvaluateOptions",
    "compare_runs",
    "evaluate_run",
    "load_eval_data",
]
