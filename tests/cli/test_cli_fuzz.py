"""Every option of every ``torchlap`` command under bad values (the command-line fuzzer).

Each option is given, in turn, each value of :func:`cli_fuzz.bad_values` ("", "nan", "inf",
"-1", "0", "1e400", an int past 2**63, "abc", 5000 characters, a folder where a file is
expected, a missing file, a file where a folder is expected, repeated and empty list items,
JSON that is no object, unknown KEY=VALUE keys) on an otherwise valid command line, in this
process. A value the option takes (:data:`ACCEPTED`) must reach the command's work (stopped
there, see :func:`cli_fuzz.stop_at_work`); any other must be refused: exit code 2, one
``Error`` line of at most 600 characters naming the option (an argument: the value given) and
what was given, no traceback, no file written or changed, and no model forward (but for
:data:`NEEDS_MODEL`).

The fast variant tries three values per option (rotating, so every value is tried on some
options); the exhaustive one (``slow``) every value on every option.
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pytest
import torch
from cli_fuzz import (
    bad_values,
    base_args,
    commands,
    fuzzed_params,
    invoke,
    stop_at_work,
    with_value,
)

from torchlap.data.export import export_builtin
from torchlap.train import TrainConfig, fit

LABELS = list(bad_values(Path("/")))

_NAMES = set(LABELS) - {"empty", "long", "file"}  # a name or path the command takes as new
#: (command, parameter) -> the labels of the values it takes
ACCEPTED: dict[tuple[str, str], set[str]] = {
    ("train", "out"): _NAMES, ("evaluate", "out"): _NAMES, ("compare", "out_text"): _NAMES,
    ("explain", "out"): _NAMES, ("demo", "out"): _NAMES, ("data export", "out"): _NAMES,
    ("bench explain", "methods"): {"empty"}, ("bench explain", "against"): {"empty"},
}  # fmt: skip
#: caps (an image count larger than the data's: all of them), repetitions and numbers with no
#: upper bound, which take a count past 2**63 (the counts checked as ints, such as
#: --mask-batch-size and --checkpoint-every, stop at 2**63 - 1: torch's and the kernels' sizes)
for _key in [("evaluate", "max_images"), ("evaluate", "max_val_images"),
             ("evaluate", "stability_images"), ("evaluate", "sanity_images"),
             ("evaluate", "lime_images"), ("export", "verify_images"), ("explain", "batch_size"),
             ("bench explain", "repeats"), ("bench explain", "rounds"),
             ("bench layer", "rounds"),
             ("bench model", "repeats"), ("bench model", "rounds"), ("demo", "lr"),
             ("train", "alpha"), ("train", "concordance_weight"), ("train", "lr"),
             ("train", "weight_decay")]:  # fmt: skip
    for _command in {_key[0], "compare"} if _key[0] == "evaluate" else {_key[0]}:
        ACCEPTED.setdefault((_command, _key[1]), set()).add("huge")
#: the counts and numbers that take 3 ("json-scalar"), 0, or both
_TAKE = {
    "train": {"3": ("epochs", "lr", "batch_size", "n_concepts", "hidden_channels", "alpha",
                    "seed", "concordance_weight", "weight_decay", "num_workers",
                    "checkpoint_every_n_steps"),
              "0": ("seed", "weight_decay", "momentum", "concordance_weight", "hidden_channels",
                    "num_workers", "alpha")},
    "evaluate": {"3": ("batch_size", "max_images", "max_val_images", "stability_images", "seed",
                       "tie_draws", "bootstrap_resamples", "sanity_images", "grid_pg_grids",
                       "lime_images"),
                 "0": ("seed", "lime_images", "bootstrap_resamples", "sanity_threshold",
                       "grid_pg_confidence")},
    "explain": {"3": ("batch_size",)},
    "export": {"3": ("batch_size", "verify_images"), "0": ("verify_images",)},
    "demo": {"3": ("epochs", "lr", "scale")},
    "data export": {"3": ("seed",), "0": ("seed",)},
    "bench explain": {"3": ("batch_size", "rise_masks", "mask_batch_size", "repeats", "rounds",
                            "num_classes")},
    "bench model": {"3": ("batch_size", "repeats", "rounds")},
    "bench layer": {"3": ("rounds", "batches")},
}  # fmt: skip
_TAKE["compare"] = _TAKE["evaluate"]
for _command, _taken in _TAKE.items():
    for _value, _params in _taken.items():
        for _param in _params:
            _label = "json-scalar" if _value == "3" else _value
            ACCEPTED.setdefault((_command, _param), set()).add(_label)

#: (command, parameter, label) -> why the refusal misses a point of the contract (strict
#: xfail: fixing one makes its case fail until it is taken out of here)
KNOWN_GAPS: dict[tuple[str, str, str], str] = {}


def _cases(exhaustive: bool) -> list[tuple[str, str, str]]:
    cases = []
    index = 0
    for name, command in commands().items():
        for param in fuzzed_params(command):
            chosen = LABELS if exhaustive else [
                LABELS[(3 * index + k) % len(LABELS)] for k in range(3)
            ]  # fmt: skip
            cases += [(name, param.name, label) for label in chosen]
            index += 1
    return cases


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a tiny trained run, a tiny dataset folder, an image, a folder, a file."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("fuzz")
    fit(TrainConfig(
        data="lesions", out=str(folder / "run"), arch="smallcnn", epochs=1, n_images=40,
        image_size=32, batch_size=16, progress_bar=False,
    ))  # fmt: skip
    export_builtin("lesions", folder / "data", n_images=40, image_size=32)
    shutil.copy(next((folder / "data" / "images" / "test").glob("*.png")), folder / "image.png")
    (folder / "a-folder").mkdir()
    (folder / "a-file.json").write_text("{}")
    return folder


def _given_shown(line: str, value: str) -> bool:
    """Whether ``line`` shows ``value``: whole, its start (a long one is cut), each of its
    comma-separated items, its key (``KEY=VALUE``), or the number it parses to."""
    if value == "":
        return "''" in line or '""' in line or "empty" in line
    items = [item.strip() for item in value.split(",") if item.strip()]
    if "=" in value and value.partition("=")[0] and value.partition("=")[0] in line:
        return True
    if value.strip()[:40] in line or (items and all(item[:40] in line for item in items)):
        return True
    try:
        number = float(value)
    except ValueError:
        return False
    shown = [repr(number)] + ([str(int(number))] if math.isfinite(number) else [])
    return any(text in line for text in shown)


def _check(root: Path, name: str, param_name: str, label: str, monkeypatch) -> None:
    monkeypatch.chdir(root)
    stop_at_work(monkeypatch)
    param = next(p for p in commands()[name].params if p.name == param_name)
    value = bad_values(root)[label]
    outcome = invoke(with_value(name, param, value, root), root)
    where = f"torchlap {name} {param.opts[0]}={value[:40]!r}"
    if label in ACCEPTED.get((name, param_name), ()):
        assert outcome.reached, f"{where} refused a value it takes: {outcome.stderr}"
        return
    assert not outcome.reached, f"{where} was accepted"
    text = outcome.stdout + outcome.stderr
    assert "Traceback" not in text, f"{where}: {text}"
    assert outcome.exit_code == 2, f"{where}: exit {outcome.exit_code}: {text}"
    assert len(outcome.error_lines) == 1, f"{where}: {outcome.stderr}"
    line = outcome.error_lines[0]
    assert len(line) <= 600, f"{where}: {len(line)} characters: {line[:300]}"
    if param.param_type_name == "argument":
        assert _given_shown(line, value), f"{where}: the value is not shown: {line}"
    else:
        named = param.opts[0] in line or re.search(rf"\b{param_name}\b", line)
        assert named, f"{where}: the option is not named: {line}"
        typed = "Input should be a valid" in line  # (typer's own type check)
        assert typed or _given_shown(line, value), f"{where}: the value is not shown: {line}"
    assert outcome.changed == [], f"{where} changed {outcome.changed}"
    if (name, param_name) not in NEEDS_MODEL:
        assert outcome.forwards == 0, f"{where}: {outcome.forwards} forwards before: {line}"


#: options whose check needs the model built (a run's contents, weights read into it)
NEEDS_MODEL = {
    # a torchvision weights name is looked up once the network is built (and lapified, with
    # its dry forward): which names exist depends on the architecture
    ("train", "pretrained"),
}


def _marked(cases: list[tuple[str, str, str]]) -> list:
    return [
        pytest.param(*case, marks=pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[case]))
        if case in KNOWN_GAPS
        else case
        for case in cases
    ]


@pytest.mark.parametrize(("name", "param_name", "label"), _marked(_cases(exhaustive=False)))
def test_bad_value_refused_up_front(root, name, param_name, label, monkeypatch):
    _check(root, name, param_name, label, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "param_name", "label"), _marked(_cases(exhaustive=True)))
def test_every_bad_value_refused_up_front(root, name, param_name, label, monkeypatch):
    _check(root, name, param_name, label, monkeypatch)


def test_every_command_is_fuzzed(root, monkeypatch):
    """The base command line of every command is valid (reaches its work), so a refusal in
    the tests above is the fuzzed value's."""
    monkeypatch.chdir(root)
    stop_at_work(monkeypatch)
    assert set(base_args(root)) == set(commands())
    for name, args in base_args(root).items():
        outcome = invoke(args, root)
        if name in ("data list", "data check", "env"):  # (listings, a check: no work to stop)
            assert outcome.exit_code == 0, outcome.stderr
        else:
            assert outcome.reached, f"{name}: {outcome.stderr}"
