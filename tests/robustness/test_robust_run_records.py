"""load_run on run folders edited by hand: a badly typed ``integrity`` record, weights that are a
symlink leading out of the run folder, an out-of-range ``image_size`` or ``format_version``, a
negative batch-norm variance. Each was loaded (NaN outputs later) or failed with a raw
AttributeError/TypeError/ValueError; now a RunError naming the key or tensor and what is
accepted."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from torchlap.runs import RunError, load_run, record_integrity


def _edit_config(run: Path, **changes: object) -> None:
    config = json.loads((run / "config.json").read_text())
    config.update(changes)
    (run / "config.json").write_text(json.dumps(config))


_ACCEPTED = r"'integrity' must be a dict of file name \(relative to the run folder\) -> "


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (["x"], _ACCEPTED + r".*got \['x'\]"),  # was AttributeError: 'list' ... 'get'
        ({"model.safetensors": "abc"}, r"'integrity' entry 'model\.safetensors' is 'abc'; "),
        ({"model.safetensors": {"sha256": ["x"]}}, r"'integrity' entry 'model\.safetensors' is "),
        ({"model.safetensors": {"sha256": "ab", "previous": 5}}, r"'integrity' entry .*: 5\}"),
    ],
)
def test_a_badly_typed_integrity_record_is_refused(run_copy: Path, record, message) -> None:
    _edit_config(run_copy, integrity=record)
    with pytest.raises(RunError, match=r"config\.json: " + message):
        load_run(run_copy)
    with pytest.raises(RunError, match=_ACCEPTED):  # training's recorder refuses it too
        record_integrity(run_copy, run_copy / "model.safetensors")


def test_weights_symlinked_out_of_the_run_folder_are_refused(run_copy: Path, tmp_path) -> None:
    """pathlib's ValueError '... is not in the subpath of ...' escaped load_run."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    weights = run_copy / "model.safetensors"
    shutil.move(weights, outside / "model.safetensors")
    os.symlink(outside / "model.safetensors", weights)
    message = r"model\.safetensors must be a file inside the run folder .*symlink leading out"
    with pytest.raises(RunError, match=message):
        load_run(run_copy)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image_size": 10**9}, r"'image_size' must be an int from 1 to 8192 .*got 1000000000"),
        ({"image_size": [0, 0]}, r"'image_size' must be an int from 1 to 8192"),
        ({"format_version": -1}, r"format_version is -1, which no torchlap wrote \(known: 1\)"),
        ({"format_version": 0}, r"format_version is 0, which no torchlap wrote"),
    ],
)
def test_out_of_range_config_numbers_are_refused(run_copy: Path, changes, message) -> None:
    _edit_config(run_copy, **changes)
    with pytest.raises(RunError, match=message):
        load_run(run_copy)


def test_a_negative_batch_norm_variance_is_refused(run_copy: Path) -> None:
    """Finite, so it passed the NaN check, and the model's outputs were NaN."""
    weights = run_copy / "model.safetensors"
    state = load_file(str(weights))
    key = next(k for k in state if k.endswith("running_var"))
    state[key] = state[key].index_fill(0, torch.tensor([0]), -1.0)
    save_file(state, str(weights))
    record_integrity(run_copy, weights)  # the edit is recorded: only the value is wrong
    with pytest.raises(RunError, match=rf"\['{key}'\] must be >= 0 .*minimum -1"):
        load_run(run_copy)
    state[key] = state[key].clamp_min(0)  # a variance of 0 is a variance
    save_file(state, str(weights))
    record_integrity(run_copy, weights)
    assert load_run(run_copy).image_size == 32


def test_config_facts_the_model_also_holds_must_be_the_models(run_copy: Path) -> None:
    """Before: an edited mean/std was checked for shape and then ignored (the weights'
    normalize buffers ran), lap_layers could name a missing module, and an edited image_size
    was used in silence (evaluate ran at 64 px a run trained at 32)."""
    config = json.loads((run_copy / "config.json").read_text())
    original = dict(config)
    channels = len(config["mean"])
    cases = [
        ({"mean": [0.9] * channels}, r"'mean' is \[0\.9.*\] but the weights normalize with"),
        ({"std": [0.01] * channels}, r"'std' is \[0\.01.*\] but the weights normalize with"),
        (
            {"lap_layers": ["nothere"]},
            r"'lap_layers' is \['nothere'\], the model's are \['avgpool', 'layer3\.pool'\]",
        ),
    ]
    trained = (config.get("train") or {}).get("image_size")
    if trained is not None:
        cases.append(({"image_size": trained * 2}, r"the run trained at"))
    for changes, message in cases:
        _edit_config(run_copy, **changes)
        with pytest.raises(RunError, match=message):
            load_run(run_copy)
        (run_copy / "config.json").write_text(json.dumps(original))
    assert load_run(run_copy).image_size == config["image_size"]


@pytest.mark.parametrize("trained", [[32, 32.0], [32.0, 32], 32.0, True, "32", [32, 32, 32]])
def test_a_training_size_of_another_type_is_refused_naming_it(run_copy: Path, trained) -> None:
    """Before: train.image_size was compared loosely with image_size, so 32.0, [32, 32.0] or
    (at 1 px) true passed as 32 (or 1); training writes an int."""
    config = json.loads((run_copy / "config.json").read_text())
    assert config["image_size"] == 32 and config["train"]["image_size"] == 32
    config["train"]["image_size"] = trained
    (run_copy / "config.json").write_text(json.dumps(config))
    got = re.escape(repr(trained))
    with pytest.raises(RunError, match=r"'train\.image_size' must be an int \(or a pair of "
                       rf"ints\), as training writes it, got {got} "):  # fmt: skip
        load_run(run_copy)


@pytest.mark.parametrize("trained", [32, [32, 32]])
def test_a_training_size_as_training_writes_it_is_read(run_copy: Path, trained) -> None:
    config = json.loads((run_copy / "config.json").read_text())
    config["train"]["image_size"] = trained
    (run_copy / "config.json").write_text(json.dumps(config))
    assert load_run(run_copy).image_size == 32
