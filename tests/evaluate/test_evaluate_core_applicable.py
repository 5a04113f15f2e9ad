"""Methods that do not apply to a run's model: the request none of whose methods applies is
refused naming the methods that would apply; otherwise (or when ``compare`` does not require
one) each skip is warned and the work goes on."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from torch import nn

from torchlap.evaluate.core import EvaluateOptions, _check_applicable
from torchlap.explainers import available

#: the methods that need a model of their own kind (a plain CNN has none of these modules)
SPECIAL = {"antehoc", "bcos", "bla", "lap"}


def _plain() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )


def test_a_request_of_only_special_methods_is_refused_naming_those_that_apply() -> None:
    options = EvaluateOptions(methods=("lap", "bla"))
    with pytest.raises(ValueError) as caught:
        _check_applicable(Path("runs/x"), _plain(), options, require=True)
    message = str(caught.value)
    assert message.startswith("runs/x: no requested method applies to its model: lap (the model")
    assert "; bla (the model has no BLA" in message
    fitting = [m for m in available() if m not in SPECIAL]
    assert re.search(r"with methods that apply to it: (.*)$", message)[1] == ", ".join(fitting)


def test_without_require_or_with_one_method_applying_each_skip_is_warned(caplog) -> None:
    model = _plain()
    with caplog.at_level(logging.WARNING, logger="torchlap.evaluate.core"):
        _check_applicable(Path("r"), model, EvaluateOptions(methods=("lap",)), require=False)
        _check_applicable(Path("r"), model, EvaluateOptions(methods=("bla", "gradcam")), True)
        _check_applicable(Path("r"), model, EvaluateOptions(methods=("gradcam",)), True)
    assert [record.getMessage() for record in caplog.records] == [
        "lap: skipped, it does not apply to the model of r (the model has no LAP layer)",
        "bla: skipped, it does not apply to the model of r (the model has no BLA/L2X-F module)",
    ]
