"""The contract checks and helpers shared by the file fuzzer's test modules
(``test_robust_file_fuzz.py``, ``test_robust_file_fuzz_inputs.py``): the one-line refusal,
Python's own words in a message, the samples of a folder, the fast variant's sample."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from file_fuzz_accepted import CONFIG_ACCEPTED, KNOWN_GAPS, RECORD_KEYS, REGRESSIONS
from typer.testing import CliRunner

from torchlap.cli import app
from torchlap.data import load_dataset
from torchlap.data.export import export_builtin

SPLITS = ("train", "val", "test")
#: Python's own messages, which say neither what was wrong in the file nor what is accepted
LEAKS = re.compile(
    r"unhashable type|object is not|has no attribute|not subscriptable|'NoneType' object|"
    r"unexpected keyword|invalid literal|could not convert|Exception raised from|"
    r"could not be broadcast|has no len\(\)|object of type"
)
#: a message ending in a bare KeyError's repr (``...: 'num_classes'``), not ``got str: 'x'``
_BARE_KEY = re.compile(r"(\w+ )?\w+: '[A-Za-z_]\w*'$")


def leaks(message: str) -> bool:
    """Whether ``message`` ends in (or holds) Python's own words instead of torchlap's."""
    bare = _BARE_KEY.search(message)
    return LEAKS.search(message) is not None or (bare is not None and bare.group(1) != "got ")


def fast(labels: list[str], share: int, seed: int) -> list[str]:
    """The fast variant's cases: a seeded sample of ``labels``, and the regressions and known
    gaps among them."""
    return sorted(set(pick(labels, share, seed)) | ((REGRESSIONS | set(KNOWN_GAPS)) & set(labels)))


def xfail_params(labels: list[str]) -> list[Any]:
    return [
        pytest.param(label, marks=pytest.mark.xfail(reason=KNOWN_GAPS[label], strict=True))
        if label in KNOWN_GAPS
        else label
        for label in labels
    ]


def make_clean_data(folder: Path) -> Path:
    """A tiny annotated folder at ``folder`` (40 lesion images of 32 px, boxes and masks)."""
    torch.set_num_threads(1)
    export_builtin("lesions", folder, n_images=40, image_size=32)
    return folder


def copy_tree(source: Path, tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(source, tmp_path / name))


def samples(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Every split of ``folder`` loaded and every sample decoded (the Python API)."""
    loaded = {}
    for split in SPLITS:
        dataset = load_dataset(folder, split=split, image_size=None)
        loaded[split] = [dataset[i] for i in range(len(dataset))]
    return loaded


def same_samples(case: dict[str, list[Any]], clean: dict[str, list[Any]]) -> None:
    for split in SPLITS:
        assert len(case[split]) == len(clean[split]), split
        for got, want in zip(case[split], clean[split], strict=True):
            assert got["label"] == want["label"]
            assert torch.allclose(got["image"], want["image"], atol=1 / 255 + 1e-6)
            assert torch.equal(got["mask"].bool(), want["mask"].bool())


def check_refusal(outcome: Any, names: list[str]) -> None:
    assert outcome.code == 2, outcome.output
    errors = error_lines(outcome.output)
    assert len(errors) == 1, outcome.output
    for name in names:
        assert name in errors[0], (name, errors[0])
    assert not leaks(errors[0]), errors[0]


def config_accepted(label: str) -> str | None:
    """Why ``label`` (a run case) is accepted, or None."""
    if label in CONFIG_ACCEPTED:
        return CONFIG_ACCEPTED[label]
    key = label.split(":", 1)[-1].split("=", 1)[0]
    return RECORD_KEYS.get(key) if label.startswith("config") else None


def explain(image: Path, run: Path, out: Path, watched: Path) -> Any:
    args = ["explain", str(image), "--run", str(run), "--methods", "lap", "--out", str(out)]
    return invoke(args, watched)


class Reached(BaseException):
    """Raised where ``torchlap train`` would start writing its run: every check passed."""


def stop_train_at_work(monkeypatch: Any) -> None:
    """Patch ``torchlap train`` to raise :class:`Reached` where it would write its folder."""
    import torchlap.train.run as train_run

    prepare_folder = train_run.prepare_folder

    def stop(out: Any, config: Any, apply: bool = True) -> Any:
        if apply:
            raise Reached
        return prepare_folder(out, config, apply=apply)

    monkeypatch.setattr(train_run, "prepare_folder", stop)


# ------------------------------------------------------------------------------------------
# running a case
class Outcome(NamedTuple):
    """What ``torchlap ARGS`` did: its exit code, output, and the files it changed."""

    code: int | None  # None: the command reached its work (:class:`Reached`)
    output: str
    changed: list[str]


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (size, modification time) of everything below ``folder``."""
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def invoke(args: list[str], watched: Path) -> Outcome:
    """Run ``torchlap ARGS`` in this process (a traceback it lets out joins the output)."""
    before = listing(watched)
    code: int | None
    try:
        result = CliRunner().invoke(app, args, env={"COLUMNS": "400", "TORCHLAP_DEBUG": ""})
        code, output = result.exit_code, result.stdout + result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            import traceback

            output += "".join(traceback.format_exception(result.exception))
    except Reached:  # every check passed (see stop_train_at_work)
        code, output = None, "reached"
    after = listing(watched)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return Outcome(code, output, changed)


def error_lines(output: str) -> list[str]:
    """The lines of ``output`` that start with ``Error``."""
    return [line for line in output.splitlines() if line.startswith("Error")]


def pick(labels: list[str], share: int, seed: int) -> list[str]:
    """A seeded sample of ``labels``: every ``share``-th after a fixed shuffle (all: 1)."""
    order = sorted(labels)
    np.random.default_rng(seed).shuffle(order)
    return sorted(order[::share])
