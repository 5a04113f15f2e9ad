"""The ``export`` extra is needed by ``--format onnx`` only: without onnx/onnxscript an ONNX
export is refused before the run is read, naming the extra; the torch formats go ahead."""

from __future__ import annotations

import sys

import pytest

import torchlap.export as export


class _StartedError(Exception):
    """Raised in place of reading the run: the checks let the export start."""


@pytest.fixture
def without_onnx(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx fails
    monkeypatch.setitem(sys.modules, "onnxscript", None)

    def started(*args, **kwargs):
        raise _StartedError

    monkeypatch.setattr(export, "load_run", started)


def test_onnx_without_the_extra_is_refused_before_the_run_is_read(tmp_path, without_onnx):
    with pytest.raises(ImportError, match=r"--format onnx needs onnx and onnxscript: pip install"):
        export.export_run(tmp_path / "run", tmp_path / "m.onnx", "onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("fmt", "name"), [("torchscript", "m.pt"), ("exported-program", "m.pt2")])
def test_the_torch_formats_do_not_need_the_extra(tmp_path, without_onnx, fmt, name):
    with pytest.raises(_StartedError):
        export.export_run(tmp_path / "run", tmp_path / name, fmt)
