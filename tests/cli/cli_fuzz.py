"""The command-line fuzzer's machinery (not a test module): every option of every ``torchlap``
command, the bad values tried on it, and one in-process run of the command with a bad value.

A run stops where the command has checked everything and would start its work (the
"reached" point of each command, patched to raise :class:`Reached`), so a value the command
accepts costs no training, evaluation or benchmark; a refused value must be refused before it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from torchlap.cli import app, command_tree


class Reached(BaseException):
    """Raised where a command starts its work: every check passed."""


def _raise_reached(*args: Any, **kwargs: Any) -> Any:
    raise Reached


@contextlib.contextmanager
def _no_demo_log(out: Path, overwrite: bool) -> Iterator[Any]:
    yield _raise_reached


def _launch(plan: Any, log_path: Path, call: Any, foreign: Any = ()) -> Any:
    return call(_raise_reached)


def stop_at_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Patch every command's first step of work to raise :class:`Reached`."""
    import torchlap.bench.explain as bench_explain
    import torchlap.bench.layer as bench_layer
    import torchlap.bench.model as bench_model
    import torchlap.data.export as data_export
    import torchlap.demo_cli as demo_cli
    import torchlap.evaluate.cli as evaluate_cli
    import torchlap.evaluate.explain as explain
    import torchlap.export as export
    import torchlap.train.run as train_run

    prepare_folder = train_run.prepare_folder

    def stop_before_writing(out: Any, config: Any, apply: bool = True) -> Any:
        if apply:
            raise Reached
        return prepare_folder(out, config, apply=apply)

    monkeypatch.setattr(train_run, "prepare_folder", stop_before_writing)
    monkeypatch.setattr(evaluate_cli, "_launch", _launch)
    monkeypatch.setattr(demo_cli, "_demo_log", _no_demo_log)
    monkeypatch.setattr(explain, "non_finite_samples", _raise_reached)
    monkeypatch.setattr(export, "LapExportModule", _raise_reached)
    monkeypatch.setattr(data_export, "atomic_folder", _raise_reached)
    monkeypatch.setattr(bench_layer, "run_layer_benchmark", _raise_reached)
    monkeypatch.setattr(bench_explain, "run_benchmark", _raise_reached)
    monkeypatch.setattr(bench_explain, "run_comparisons", _raise_reached)
    monkeypatch.setattr(bench_model, "_build", _raise_reached)


def commands() -> dict[str, Any]:
    """``"train"``, ``"bench layer"``, ... -> the click command typer builds."""
    found: dict[str, Any] = {}

    def walk(command: Any, path: tuple[str, ...]) -> None:
        subs = getattr(command, "commands", None)
        if subs is None:
            found[" ".join(path)] = command
            return
        for name, sub in subs.items():
            walk(sub, (*path, name))

    walk(command_tree(), ())
    return found


@dataclass
class Outcome:
    """What one run of the command did."""

    exit_code: int | None
    stdout: str
    stderr: str
    reached: bool
    changed: list[str] = field(default_factory=list)
    forwards: int = 0

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("Error")]


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with its size and modification time."""
    result = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            stat = path.lstat()
            result[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns)
    return result


def invoke(args: list[str], watched: Path) -> Outcome:
    """Run ``torchlap ARGS`` in this process; what it printed, whether it reached its work,
    which paths under ``watched`` it changed and how many module forwards it made."""
    before = listing(watched)
    forwards = [0]

    def count(module: Any, inputs: Any) -> None:
        forwards[0] += 1

    handle = torch.nn.modules.module.register_module_forward_pre_hook(count)
    reached = False
    try:
        result = CliRunner().invoke(app, args)
        code, out, err = result.exit_code, result.stdout, result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            import traceback

            err += "".join(traceback.format_exception(result.exception))
    except Reached:
        reached, code, out, err = True, None, "", ""
    finally:
        handle.remove()
    after = listing(watched)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return Outcome(code, out, err, reached, changed, forwards[0])


#: the values tried on every option (label -> value; paths filled in by :func:`bad_values`)
GENERIC = {
    "empty": "",
    "nan": "nan",
    "inf": "inf",
    "-inf": "-inf",
    "-1": "-1",
    "0": "0",
    "1e400": "1e400",
    "huge": "99999999999999999999",  # an int past 2**63
    "abc": "abc",
    "long": "x" * 5000,
    "repeated": "lap,lap",
    "empty-item": "lap,,gradcam",
    "json-list": "[1, 2]",
    "json-broken": '{"rise": ',
    "json-scalar": "3",
    "kv-unknown": "nosuchkey=1",
    "kv-no-key": "=1",
}


def bad_values(root: Path) -> dict[str, str]:
    """:data:`GENERIC` and the path values under ``root``: a folder where a file is expected,
    a file that does not exist, a file where a folder is expected."""
    return {
        **GENERIC,
        "folder": str(root / "a-folder"),
        "missing": str(root / "no-such-file.json"),
        "file": str(root / "a-file.json"),
    }


def base_args(root: Path) -> dict[str, list[str]]:
    """A valid command line of each command (every one stops at its work)."""
    run, data, image = str(root / "run"), str(root / "data"), str(root / "image.png")
    tiny = ["--max-images", "4", "--max-val-images", "4"]
    return {
        "demo": ["demo", "--out", str(root / "out-demo"), "--arch", "smallcnn", "--scale", "0.1"],
        "train": ["train", "--data", "lesions", "--out", str(root / "out-run"), "--arch",
                  "smallcnn", "--n-images", "40", "--image-size", "32"],
        "evaluate": ["evaluate", "--run", run, "--out", str(root / "out-eval"), *tiny],
        "compare": ["compare", run, "--out", str(root / "out-compare"), *tiny],
        "explain": ["explain", image, "--run", run, "--out", str(root / "out-explain")],
        "export": ["export", "--run", run, "--out", str(root / "out.onnx"), "--verify-images",
                   "0"],
        "bench layer": ["bench", "layer"],
        "bench explain": ["bench", "explain", "--sizes", "64"],
        "bench model": ["bench", "model"],
        "data export": ["data", "export", "lesions", "--out", str(root / "out-data"),
                        "--n-images", "40", "--image-size", "32"],
        "data check": ["data", "check", data],
        "data list": ["data", "list"],
        "env": ["env"],
    }  # fmt: skip


#: options that only act with another setting: the setting added when they are fuzzed
COMPANIONS = {
    "sanity_images": ["--sanity"], "sanity_threshold": ["--sanity"],
    "check_methods": ["--sanity"], "grid_pg_shape": ["--grid-pg"],
    "grid_pg_grids": ["--grid-pg"], "grid_pg_confidence": ["--grid-pg"],
    "lime_images": ["--methods", "lap,bla"], "lime_option": ["--methods", "lap,bla"],
    "method_options": ["--methods", "lap,gradcam,rise"],
    "bcos_norm": ["--model", "bcos"], "freeze_features": ["--model", "bla"],
    "momentum": ["--optimizer", "sgd"],
}  # fmt: skip


def fuzzed_params(command: Any) -> list[Any]:
    """The parameters of ``command`` that take a value (flags and -q/-v/--help left out)."""
    return [
        p
        for p in command.params
        if not getattr(p, "is_flag", False) and p.name not in ("quiet", "verbose", "help")
    ]


def with_value(name: str, param: Any, value: str, root: Path) -> list[str]:
    """The command line of ``name`` with ``value`` given to ``param``."""
    args = base_args(root)[name]
    extra = COMPANIONS.get(param.name, [])
    if param.param_type_name == "argument":  # (every command has one: its first word)
        depth = len(name.split())
        # after "--": a value such as "-1" is the argument, not an option
        return [*args[:depth], *args[depth + 1 :], *extra, "--", value]
    return [*args, *extra, f"{param.opts[0]}={value}"]
