"""``torchlap compare`` checks every run before it writes anything: a later run refused while its
evaluation is prepared leaves the output folder as it was, byte for byte.

Before: compare evaluated and wrote each run in turn, so a BLA run whose LIME check cannot run
(a 1x1 feature map) was refused after the vanilla run before it had its results, figures and
method caches written (and, under ``--force``, an earlier comparison's replaced).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tiny_runs import tiny_lesions, tiny_run
from torchlap.cli import app
from torchlap.evaluate import EvaluateOptions, compare_runs

QUICK = dict(max_images=4, max_val_images=4, stability_images=1, stability_fractions=(0.1,),
             batch_size=8, ks=(50,), tie_draws=1)  # fmt: skip
_REFUSAL = r"run bla \(.*\): LIME faithfulness .* a 1x1 feature map of a 8x8 image"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A vanilla and a BLA small CNN trained one epoch on 8 px images of a 40-image folder
    (BLA's map there is one cell: paper 002's LIME check cannot run on it)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("compare-checks")
    data = tiny_lesions(root)
    made = {}
    for name, model in (("vanilla", "lap"), ("bla", "bla-t")):
        lap = "auto" if model == "bla-t" else "none"
        made[name] = tiny_run(data, root / name, model=model, lap=lap, image_size=8)
    return made


def _listing(folder: Path) -> dict[str, str]:
    """Every entry below ``folder``: a folder as ``"folder"``, a file as its SHA-256."""
    return {
        p.relative_to(folder).as_posix(): (
            "folder" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        )
        for p in sorted(folder.rglob("*"))
    }


def _options(lime_images: int) -> EvaluateOptions:
    return EvaluateOptions(methods=("gradcam", "bla"), lime_images=lime_images, **QUICK)


def test_a_later_run_refused_writes_nothing(runs, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=_REFUSAL):
        compare_runs([runs["vanilla"], runs["bla"]], None, out, _options(lime_images=2))
    assert not out.exists()


def test_a_later_run_refused_leaves_an_earlier_comparison_as_it_was(runs, tmp_path):
    out = tmp_path / "out"
    compare_runs([runs["vanilla"], runs["bla"]], None, out, _options(lime_images=0))
    (out / "notes.txt").write_text("mine\n")
    before = _listing(out)
    assert "vanilla/results.json" in before and "bla/methods/bla.json" in before
    with pytest.raises(ValueError, match=_REFUSAL):
        compare_runs([runs["vanilla"], runs["bla"]], None, out, _options(lime_images=2),
                     force=True)  # fmt: skip
    assert _listing(out) == before


def test_the_command_line_refusal_keeps_the_folder_and_the_users_log(runs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "compare.log").write_text("my own notes\n")
    before = _listing(out)
    args = ["compare", str(runs["vanilla"]), str(runs["bla"]), "--out", str(out), "--methods",
            "gradcam,bla", "--max-images", "4", "--max-val-images", "4", "--stability-images",
            "1", "--lime-images", "2", "--force"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "run bla (" in result.output and "Traceback" not in result.output
    assert _listing(out) == before


def test_runs_reading_the_same_images_read_them_once(runs, tmp_path, monkeypatch):
    """Every run is prepared before the first is evaluated; the splits are opened and decoded
    once for the runs that read the same images (before, once per run, and the test split once
    more to check its classes)."""
    import torchlap.evaluate.split_data as split_data

    opened, decoded = [], []
    real_open, real_decode = split_data.open_eval_split, split_data.decode_eval_split

    def counting_open(*args, **kwargs):
        opened.append(args[2])
        return real_open(*args, **kwargs)

    def counting_decode(run, split, *args, **kwargs):
        decoded.append(split.split)
        return real_decode(run, split, *args, **kwargs)

    monkeypatch.setattr(split_data, "open_eval_split", counting_open)
    monkeypatch.setattr(split_data, "decode_eval_split", counting_decode)
    results = compare_runs([runs["vanilla"], runs["bla"]], None, tmp_path / "o", _options(0))
    assert sorted(opened) == sorted(decoded) == ["test", "val"]
    assert results.is_file()
    evaluated = [json.loads((tmp_path / "o" / n / "results.json").read_text())["data"]
                 for n in ("vanilla", "bla")]  # fmt: skip
    assert evaluated[0]["fingerprint"] == evaluated[1]["fingerprint"]
    assert evaluated[0]["n_images"] == evaluated[1]["n_images"] == 4
