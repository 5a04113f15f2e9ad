"""``load_run`` on weights edited by hand (the edit recorded, so only the content is wrong):
missing, unexpected and misshaped tensors named (the first five of each), an input
normalization that divides by zero refused, the model returned in eval mode with the file's
tensors; a square ``train.image_size`` pair read as its side. ``pretrained_weights`` on run
folders made by hand: the weights of a run with a digest come back pinned to it."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from torchlap.io import PinnedPath
from torchlap.runs import (
    CONFIG_FILE,
    RUN_FORMAT,
    WEIGHTS_FILE,
    RunError,
    RunFileNotFoundError,
    load_run,
    pretrained_weights,
    record_integrity,
)


def _save(run: Path, state: dict[str, torch.Tensor]) -> None:
    save_file(state, str(run / WEIGHTS_FILE))
    record_integrity(run, run / WEIGHTS_FILE)


def _edit_train(run: Path, **changes: object) -> None:
    config = json.loads((run / CONFIG_FILE).read_text())
    config["train"] = {**(config.get("train") or {}), **changes}
    (run / CONFIG_FILE).write_text(json.dumps(config))


def test_weights_that_do_not_fit_the_model_are_named(tiny_run: Path, run_copy: Path) -> None:
    """Seven of each kind: the message names five of each (the first five missing and
    misshaped in the model's order; the file's unexpected names come in no fixed order)."""
    order = list(load_run(tiny_run).model.state_dict())  # the model's keys, in its order
    state = load_file(str(run_copy / WEIGHTS_FILE))
    gone, reshaped = order[:7], order[-7:]
    extras = {f"extra{i}.weight" for i in range(7)}
    edited = {k: v for k, v in state.items() if k not in gone}
    edited.update({name: torch.zeros(2) for name in extras})
    edited.update({k: torch.zeros(*state[k].shape, 2, dtype=state[k].dtype) for k in reshaped})
    _save(run_copy, edited)
    wrong = [f"{k}: file {tuple(edited[k].shape)}, model {tuple(state[k].shape)}" for k in reshaped]
    with pytest.raises(RunError) as raised:
        load_run(run_copy)
    said = re.fullmatch(
        rf"{re.escape(str(run_copy / WEIGHTS_FILE))} does not match the model "
        rf"{re.escape(str(run_copy / CONFIG_FILE))} describes \(was config\.json edited\?\): "
        r"missing (\[.*\]), unexpected (\[.*\]), shape mismatches (\[.*\])",
        str(raised.value),
    )
    assert said is not None, str(raised.value)
    missing, unexpected, mismatches = map(ast.literal_eval, said.groups())
    assert missing == gone[:5] and mismatches == wrong[:5]
    assert len(set(unexpected)) == 5 and set(unexpected) <= extras


@pytest.mark.parametrize("kind", ["missing", "unexpected", "misshaped"])
def test_one_misfit_tensor_alone_is_refused(run_copy: Path, kind: str) -> None:
    state = load_file(str(run_copy / WEIGHTS_FILE))
    key = sorted(state)[0]
    if kind == "missing":
        del state[key]
    elif kind == "unexpected":
        state["extra.weight"] = torch.zeros(2)
    else:
        state[key] = torch.zeros(*state[key].shape, 2, dtype=state[key].dtype)
    _save(run_copy, state)
    with pytest.raises(RunError, match=r"does not match the model .*config\.json describes"):
        load_run(run_copy)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.double(), r"is torch\.float64 in the file but torch\.float32 in the model"),
        (lambda t: t.clone().fill_(float("nan")), r"holds NaN or infinite values"),
    ],
    ids=["dtype", "NaN"],
)
def test_weights_of_another_dtype_or_not_finite_are_refused(
    run_copy: Path, change, message: str
) -> None:
    state = load_file(str(run_copy / WEIGHTS_FILE))
    key = next(k for k, v in state.items() if v.dtype == torch.float32 and "normalize" not in k)
    _save(run_copy, {**state, key: change(state[key])})
    with pytest.raises(RunError, match=message + r".*\(was model\.safetensors edited\?\)$"):
        load_run(run_copy)


@pytest.mark.parametrize("value", [0.0, -0.5])
def test_an_input_normalization_dividing_by_zero_or_less_is_refused(
    run_copy: Path, value: float
) -> None:
    state = load_file(str(run_copy / WEIGHTS_FILE))
    key = next(k for k in state if k.endswith("normalize.std"))
    std = state[key].clone()
    std.view(-1)[0] = value  # one channel only: the others stay > 0
    _save(run_copy, {**state, key: std})
    with pytest.raises(RunError, match=rf"tensor '{key}' must be > 0 per channel"):
        load_run(run_copy)


def test_the_loaded_model_is_in_eval_mode_with_the_files_tensors(tiny_run: Path) -> None:
    model = load_run(tiny_run).model
    assert not any(module.training for module in model.modules())
    state = load_file(str(tiny_run / WEIGHTS_FILE))
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


def test_a_square_training_size_pair_is_its_side(run_copy: Path) -> None:
    side = json.loads((run_copy / CONFIG_FILE).read_text())["image_size"]
    _edit_train(run_copy, image_size=[side, side])
    assert load_run(run_copy).image_size == side
    _edit_train(run_copy, image_size=[side, side // 2])
    with pytest.raises(RunError, match=rf"the run trained at \[{side}, {side // 2}\]"):
        load_run(run_copy)


def test_a_model_record_no_builder_owns_is_named(run_copy: Path) -> None:
    config = json.loads((run_copy / CONFIG_FILE).read_text())
    config["model"]["builder"] = "nowhere"
    (run_copy / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(RunError, match=r"config\.json does not describe a model: .*'nowhere'"):
        load_run(run_copy)


# ------------------------------------------------------------------------ pretrained_weights


def _folder(path: Path, config: dict | None, weights: bytes | None = b"w") -> Path:
    path.mkdir(parents=True)
    if config is not None:
        (path / CONFIG_FILE).write_text(json.dumps(config))
    if weights is not None:
        (path / WEIGHTS_FILE).write_bytes(weights)
    return path


def test_pretrained_weights_pins_a_runs_recorded_weights_only(tmp_path: Path) -> None:
    recorded = _folder(tmp_path / "recorded", {"format": RUN_FORMAT})
    record_integrity(recorded, recorded / WEIGHTS_FILE)
    pinned = pretrained_weights(recorded)
    assert isinstance(pinned, PinnedPath) and pinned == str(recorded / WEIGHTS_FILE)
    assert pinned.sha256 == frozenset({hashlib.sha256(b"w").hexdigest()})
    unrecorded = _folder(tmp_path / "old run", {"format": RUN_FORMAT})  # before digests
    foreign = _folder(tmp_path / "foreign", {"lr": 0.1})  # not torchlap's config: not checked
    bare = _folder(tmp_path / "bare", None)
    for folder in (unrecorded, foreign, bare):
        weights = pretrained_weights(folder)
        assert type(weights) is str and weights == str(folder / WEIGHTS_FILE)
    (foreign / WEIGHTS_FILE).write_bytes(b"changed")  # (a foreign config records nothing)
    assert pretrained_weights(foreign) == str(foreign / WEIGHTS_FILE)


def test_pretrained_weights_passes_names_and_files_on_and_refuses_empty_folders(
    tmp_path: Path,
) -> None:
    assert pretrained_weights("IMAGENET1K_V1") == "IMAGENET1K_V1"
    file = tmp_path / "w.safetensors"
    assert pretrained_weights(file) == os.fspath(file)
    empty = _folder(tmp_path / "empty", {"format": RUN_FORMAT}, weights=None)
    with pytest.raises(RunFileNotFoundError, match=r"pretrained folder .*empty holds no model"):
        pretrained_weights(empty)
    with pytest.raises(TypeError, match="pretrained must be a str or a path, got 3"):
        pretrained_weights(3)  # type: ignore[arg-type]
