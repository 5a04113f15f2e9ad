"""report.html warns when the runs shown were computed under different metric definitions."""

from __future__ import annotations

from torchlap.report.glance import revision_warnings


def _run(revision):
    protocol = {} if revision is None else {"metrics_revision": revision}
    return {"protocol": protocol, "methods": {}}


def test_runs_of_one_revision_give_no_warning():
    assert revision_warnings({"a": _run(7), "b": _run(7)}) == []


def test_runs_of_different_revisions_are_named():
    (warning,) = revision_warnings({"a": _run(6), "b": _run(7), "c": _run(None)})
    assert "revision 6: a" in warning and "revision 7: b" in warning
    assert "revision unrecorded: c" in warning and "not comparable" in warning
