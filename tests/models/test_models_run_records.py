"""load_run on an edited run folder: a model.lapify record that is not the list of dicts lapify
writes, and weights of another dtype or with NaN/inf, are refused with a RunError naming the
key or the tensor (before the model is built, for the record)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from torchlap.models import apply_lapify_config
from torchlap.models.recipes import build_for_training
from torchlap.models.wrapping import NormalizedClassifier, SmallCNN
from torchlap.runs import RunError, load_run
from torchlap.train import TrainConfig

CONV = "net.layer1.conv.weight"


@pytest.fixture(scope="module")
def run_parts() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """config.json and model.safetensors of a small LAP run (not trained: only its files)."""
    torch.manual_seed(0)
    config = TrainConfig(data="lesions", out="unused", arch="smallcnn", image_size=32)
    built = build_for_training(config, 2, 3)
    model = NormalizedClassifier(built.net, [0.5] * 3, [0.25] * 3)
    run_config = {
        "format": "torchlap-run", "format_version": 1, "model": built.record,
        "discriminative_scorers": built.discriminative, "classes": ["benign", "malignant"],
        "mean": [0.5] * 3, "std": [0.25] * 3, "in_channels": 3, "image_size": 32,
    }  # fmt: skip
    return json.loads(json.dumps(run_config)), model.state_dict()


def _run(
    tmp_path: Path,
    parts: tuple[dict[str, Any], dict[str, torch.Tensor]],
    edit_config: Callable[[dict[str, Any]], None] | None = None,
    edit_state: Callable[[dict[str, torch.Tensor]], None] | None = None,
) -> Path:
    config, state = json.loads(json.dumps(parts[0])), dict(parts[1])
    if edit_config is not None:
        edit_config(config)
    if edit_state is not None:
        edit_state(state)
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_file(state, str(tmp_path / "model.safetensors"))
    return tmp_path


def test_the_unedited_run_loads(tmp_path, run_parts) -> None:
    run = load_run(_run(tmp_path, run_parts))
    assert torch.equal(run.model.state_dict()[CONV], run_parts[1][CONV])


def _set_lapify(value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda config: config["model"].__setitem__("lapify", value)


def _edit_call(key: str, value: Any = KeyError) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        call = config["model"]["lapify"][0]
        if value is KeyError:
            del call[key]
        else:
            call[key] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            _set_lapify("resnet18"),
            r"model\.lapify must be a list of recorded lapify calls.*'sites'",
        ),
        (_set_lapify(["x"]), r"model\.lapify\[0\] must be a dict with the keys \['sites'"),
        (_edit_call("sites"), r"model\.lapify\[0\] lacks the key\(s\) \['sites'\]: it must be"),
        (_edit_call("alpha"), r"model\.lapify\[0\] lacks the key\(s\) \['alpha'\]"),
        (_edit_call("sites", "layer1"), r"model\.lapify\[0\]\['sites'\] must be a non-empty list"),
        (_edit_call("sites", []), r"model\.lapify\[0\]\['sites'\] must be a non-empty list"),
        (_edit_call("aggregation", "module"), r"model\.lapify\[0\] used an nn\.Module aggregation"),
        (_edit_call("n_concepts", True), r"model\.lapify\[0\]: n_concepts must be an int >= 1"),
    ],
)
def test_an_edited_lapify_record_is_refused_naming_it(tmp_path, run_parts, edit, message) -> None:
    with pytest.raises(RunError, match=message):
        load_run(_run(tmp_path, run_parts, edit_config=edit))


def test_apply_lapify_config_checks_the_record_too() -> None:
    with pytest.raises(TypeError, match=r"lapify must be a list"):
        apply_lapify_config(SmallCNN(2, 3), "resnet18", name="lapify")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^calls\[0\] lacks the key\(s\)"):
        apply_lapify_config(SmallCNN(2, 3), [{"sites": ["layer1"]}], name="calls")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.double(), rf"'{CONV}' is torch\.float64 in the file but torch\.float32"),
        (lambda t: (t * 1000).long(), rf"'{CONV}' is torch\.int64 in the file but torch\.float32"),
        (lambda t: torch.full_like(t, float("nan")), rf"'{CONV}' holds NaN or infinite values"),
        (lambda t: t.index_fill(0, torch.tensor([1]), -float("inf")), rf"'{CONV}' holds NaN"),
    ],
)
def test_weights_of_another_dtype_or_not_finite_are_refused(
    tmp_path, run_parts, change, message
) -> None:
    run = _run(tmp_path, run_parts, edit_state=lambda s: s.__setitem__(CONV, change(s[CONV])))
    with pytest.raises(RunError, match=r"model\.safetensors: tensor " + message):
        load_run(run)


def test_a_zero_normalization_std_is_refused(tmp_path, run_parts) -> None:
    """A std of zeros is finite, so it passed the NaN check and the run gave inf logits."""
    key = "normalize.std"
    run = _run(
        tmp_path, run_parts, edit_state=lambda s: s.__setitem__(key, torch.zeros_like(s[key]))
    )
    with pytest.raises(RunError, match=r"tensor 'normalize\.std' must be > 0 per channel"):
        load_run(run)
