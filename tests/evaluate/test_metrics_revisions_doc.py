"""docs/metrics-revisions.md says what every metrics revision changed, the current one too."""

from __future__ import annotations

import re
from pathlib import Path

from torchlap.evaluate import METRICS_REVISION

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics-revisions.md"


def test_every_revision_is_listed_once_in_order() -> None:
    listed = [int(n) for n in re.findall(r"^- \*\*(\d+)\*\*: ", DOC.read_text(), re.MULTILINE)]
    assert listed == list(range(2, METRICS_REVISION + 1))
