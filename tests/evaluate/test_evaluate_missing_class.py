"""A split evaluated without an image of some class says so: the metrics that need every class
(sensitivity, specificity, balanced accuracy) are n/a there, and the report's per-class plots
collapse; before, nothing said why."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch

from torchlap.evaluate import load_eval_data
from torchlap.evaluate.provenance import DataSettings

RUN = SimpleNamespace(config={}, image_size=32, in_channels=1, classes=["negative", "positive"])


def test_a_split_without_a_class_is_named_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    settings = DataSettings(n_images=100)
    with caplog.at_level(logging.WARNING, logger="torchlap.evaluate.common"):
        whole = load_eval_data(RUN, "lesions", "test", None, settings=settings)
    assert not caplog.records  # both classes present: nothing to say
    first = int(whole.labels[0])
    same = int((whole.labels == first).long().cumprod(0).sum())  # the leading run of one class
    with caplog.at_level(logging.WARNING, logger="torchlap.evaluate.common"):
        cut = load_eval_data(RUN, "lesions", "test", same, settings=settings)
    assert torch.equal(cut.labels, torch.full((same,), first))
    other = RUN.classes[1 - first]
    assert f"holds no image of class '{other}'" in caplog.text
    assert "balanced accuracy) are n/a on it" in caplog.text
