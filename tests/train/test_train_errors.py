"""Bad input and faults of ``torchlap train``: each gives a clear error before work is done."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from train_configs import tiny_config
from typer.testing import CliRunner

from torchlap.cli import app
from torchlap.data import load_dataset
from torchlap.losses import ConceptSets
from torchlap.models.recipes import RECIPES
from torchlap.runs import RUN_FORMAT
from torchlap.train import NonFiniteLossError, PhaseConfig, RunFolderError, TrainConfig, fit
from torchlap.train.folder import prepare_folder as _prepare_folder
from torchlap.train.wrapping import SmallCNN

N_IMAGES = 80  # lesions: a few dozen 32x32 images, enough for 4+ batches of 16


def _config(out: Path, **kw) -> TrainConfig:
    return tiny_config(out, **{"n_images": N_IMAGES, "lap": "auto", **kw})


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"arch": "resnet1800"}, ValueError, "unknown architecture 'resnet1800'"),
        ({"lap": "resnet99"}, ValueError, "unknown lap='resnet99'"),
        ({"lap": "resnet18"}, ValueError, "preset 'resnet18' does not fit this model"),
        ({"phases": [PhaseConfig(1, train="layer9")]}, ValueError, "phase 1: phase trains module"),
        # Lightning used to reject these after config.json and train.log were written
        ({"accelerator": "foo"}, ValueError, r"unknown --accelerator 'foo'; expected one of auto"),
        ({"strategy": "foo"}, ValueError, r"unknown --strategy 'foo'; expected one of auto, ddp"),
        ({"strategy": "ddp_spawn"}, ValueError, r"--strategy ddp_spawn starts its processes by"),
        # settings of LAP layers for a model without any: they used to be dropped silently
        (
            {"lap": "none", "supervision": "expert"},
            ValueError,
            r"--lap none builds a model without LAP layers, but supervision='expert' configure",
        ),
        (
            {"model": "bla", "min_ar": 0.2, "alpha": 2.0},
            ValueError,
            r"--model bla builds .*, but min_ar=0.2, alpha=2.0 configure LAP layers",
        ),
    ],
)
def test_bad_model_settings_fail_before_writing(
    tmp_path: Path, changes: dict, error: type, message: str
) -> None:
    out = tmp_path / "run"
    with pytest.raises(error, match=message):
        fit(_config(out, **changes))
    assert not out.exists()


def _class_only_folder(root: Path) -> Path:
    """An ImageFolder-style tree with no boxes or masks."""
    generator = torch.Generator().manual_seed(0)
    for name in ("cats", "dogs"):
        (root / name).mkdir(parents=True)
        for index in range(6):
            pixels = (torch.rand(24, 24, 3, generator=generator) * 255).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(root / name / f"{index}.png")
    return root


def test_expert_supervision_needs_boxes(tmp_path: Path) -> None:
    data = _class_only_folder(tmp_path / "images")
    out = tmp_path / "run"
    config = _config(out, data=str(data), n_images=None, supervision="expert")
    with pytest.raises(ValueError, match="--supervision expert needs boxes or masks"):
        fit(config)
    assert not out.exists()


def test_expert_supervision_needs_a_box_not_only_box_columns(tmp_path: Path) -> None:
    """Before: a CSV with box columns empty on every row trained with loss_expert 0.69 and every
    positive as "region nowhere"."""
    data = _class_only_folder(tmp_path / "images")
    rows = ["image,label,split,x_min,y_min,x_max,y_max,mask"]
    for name, split in (("cats", "train"), ("dogs", "train")):
        rows += [f"{name}/{k}.png,{name},{split},,,,," for k in range(4)]
        rows += [f"{name}/4.png,{name},val,,,,,", f"{name}/5.png,{name},test,,,,,"]
    (data / "annotations.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    config = _config(out, data=str(data), n_images=None, supervision="expert")
    with pytest.raises(ValueError, match=r"needs boxes or masks, .* \(no image of it has a box"):
        fit(config)
    assert not out.exists()


def test_one_class_data_is_refused_before_writing(tmp_path: Path) -> None:
    # torchmetrics used to refuse num_classes=1 after the run folder was written
    data = _class_only_folder(tmp_path / "images")
    for extra in (data / "dogs").iterdir():
        extra.unlink()
    (data / "dogs").rmdir()
    check = CliRunner().invoke(app, ["data", "check", str(data)])
    assert check.exit_code == 2 and "training split has 1 class (['cats'])" in check.output
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"has 1 class \(\['cats'\]\); a classifier needs"):
        fit(_config(out, data=str(data), n_images=None))
    assert not out.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--min-ar", "0.6", "--max-ar", "0.5"], r"MinAR \(0.6\) must not exceed MaxAR \(0.5\)"),
        (["--min-ar", "0"], r"min_ar \(MinAR\) must be a number in \(0, 1\], got 0"),
        (["--iar", "1.5"], r"iar \(IAR\) must be a number in \(0, 1\], got 1.5"),
        (["--supervision", "strong"], "unknown supervision 'strong'"),
        (["--phase", "lap:two"], "bad phase 'lap:two'"),
        (["--arch", "resnet1800"], "unknown architecture"),
        (["--data-option", "foo=1"], r"the built-in 'lesions' has no option\(s\) \['foo'\]"),
        (["--concept-sets", "."], r"--concept-sets \. is a folder; pass the JSON file"),
    ],
)
def test_cli_reports_bad_input(tmp_path: Path, options: list[str], message: str) -> None:
    out = tmp_path / "run"
    args = ["train", "--data", "lesions", "--out", str(out), "--n-images", str(N_IMAGES)]
    result = CliRunner().invoke(app, [*args, "--image-size", "32", *options])
    assert result.exit_code == 2, result.output
    assert "Error:" in result.output
    assert re.search(message, result.output), result.output
    assert not out.exists()


def _fake_run(out: Path, config: TrainConfig) -> None:
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps({"format": RUN_FORMAT, "train": config.to_dict()}))
    (out / "metrics.json").write_text("{}")
    (out / "notes.txt").write_text("mine")


def test_folder_with_another_run_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _fake_run(out, _config(out, seed=1))
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(
        RunFolderError, match=r"holds a different run \(differing settings: \['seed'\]"
    ):
        fit(_config(out, seed=0))
    assert sorted(p.name for p in out.iterdir()) == before


def test_folder_with_the_same_run_needs_resume_or_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _fake_run(out, _config(out))
    with pytest.raises(RunFolderError, match="already holds this run; pass --resume"):
        fit(_config(out, devices="auto"))  # execution settings do not make another run


def test_foreign_folder_and_missing_resume_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("x")
    with pytest.raises(RunFolderError, match="is not empty and holds no torchlap run"):
        fit(_config(out))
    # --overwrite replaces a run; it does not turn a folder of other files into one
    with pytest.raises(RunFolderError, match=r"holds no torchlap run .*--overwrite replaces a run"):
        fit(_config(out, overwrite=True))
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]
    with pytest.raises(RunFolderError, match="holds no run"):
        fit(_config(tmp_path / "nothing", resume=True))


@pytest.mark.parametrize("name", ["model.safetensors", "metrics.json", "config.json"])
def test_a_run_file_name_that_is_a_link_to_nothing_is_refused(tmp_path: Path, name) -> None:
    """Before: the folder passed as empty (the link was in neither list) and the run replaced
    the user's link with its own file."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / name).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RunFolderError, match=r"torchlap did not write them and will not replace"):
        _prepare_folder(out, _config(out), apply=True)
    assert (out / name).is_symlink() and [p.name for p in out.iterdir()] == [name]


@pytest.mark.parametrize("name", ["metrics.json", "model.safetensors", "checkpoints"])
def test_a_run_entry_of_the_wrong_kind_is_refused_even_with_overwrite(tmp_path: Path, name):
    """Before: --overwrite of a run whose metrics.json was a folder deleted the whole folder
    (shutil.rmtree), and a file named checkpoints was deleted; torchlap wrote neither."""
    out = tmp_path / "run"
    _fake_run(out, _config(out, seed=1))
    if name == "checkpoints":
        (out / name).write_text("my notes")
    else:
        (out / name).unlink(missing_ok=True)  # the fake run's metrics.json
        (out / name).mkdir()
        (out / name / "mine.txt").write_text("my notes")
    kind = "file" if name == "checkpoints" else "folder"
    with pytest.raises(RunFolderError, match=rf"{re.escape(name)} is a {kind} \(torchlap train"):
        _prepare_folder(out, _config(out, overwrite=True), apply=True)
    assert (out / name).exists() and (out / "config.json").exists()


def test_overwrite_removes_only_run_files(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _fake_run(out, _config(out, seed=1))
    (out / "checkpoints" / "phase1").mkdir(parents=True)
    _prepare_folder(out, _config(out, overwrite=True), apply=False)  # the dry check deletes nothing
    assert (out / "config.json").exists()
    _prepare_folder(out, _config(out, overwrite=True), apply=True)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


class _NaNAfter(torch.nn.Module):
    """SmallCNN whose training forward returns NaN logits from the ``n``-th call on."""

    def __init__(self, net: torch.nn.Module, n: int) -> None:
        super().__init__()
        self.net = net
        self.n = n
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.n:
                return out * float("nan")
        return out


def test_nan_loss_stops_with_epoch_and_batch_and_keeps_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def build(spec):
        net = SmallCNN(spec.num_classes, spec.in_channels)
        return _NaNAfter(net, n=steps_per_epoch + 2), {"builder": "test"}

    train_size = len(load_dataset("lesions", split="train", image_size=32, n_images=N_IMAGES))
    steps_per_epoch = math.ceil(train_size / 16)
    monkeypatch.setattr(RECIPES["vanilla"], "build", build)  # the family --lap none trains
    out = tmp_path / "run"
    config = _config(out, lap="none", epochs=3)
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, batch 2 \(loss terms"):
        fit(config)
    # the checkpoint of the end of epoch 1 is kept: finite weights, one epoch of history
    checkpoint = torch.load(out / "checkpoints" / "phase1" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == steps_per_epoch
    assert checkpoint["torchlap"]["batches_done"] == 0
    floats = [v for v in checkpoint["state_dict"].values() if v.is_floating_point()]
    assert floats and all(bool(torch.isfinite(v).all()) for v in floats)
    assert len(checkpoint["torchlap"]["history"]) == 1
    assert not (out / "model.safetensors").exists()
    assert json.loads((out / "metrics.json").read_text())["status"] == "running"


def test_concept_sets_that_are_not_json_are_named(tmp_path: Path) -> None:
    (tmp_path / "sets.json").write_text("{class 0: [1]")
    out = tmp_path / "run"
    args = ["train", "--data", "lesions", "--out", str(out), "--concept-sets"]
    result = CliRunner().invoke(app, [*args, str(tmp_path / "sets.json")])
    assert result.exit_code == 2, result.output
    assert re.search(r"--concept-sets .*sets\.json is not JSON \(.*\); expected", result.output)
    assert not out.exists()


def test_a_concept_sets_file_gives_its_concept_count(tmp_path: Path) -> None:
    """Three concepts for two classes: taken without --n-concepts (it was refused by the model
    recipe, naming neither the option nor the file), refused naming both with a different one."""
    sets = tmp_path / "sets.json"
    sets.write_text(json.dumps(ConceptSets.default(2, 3).to_dict()))  # (with a common head)
    args = ["train", "--data", "lesions", "--arch", "smallcnn", "--n-images", "40",
            "--image-size", "32", "--epochs", "1", "--no-progress",
            "--concept-sets", str(sets)]  # fmt: skip
    refused = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a"), "--n-concepts", "1"])
    assert refused.exit_code == 2, refused.output
    assert re.search(r"--concept-sets .*sets\.json holds 3 concept\(s\) per LAP layer, but "
                     r"--n-concepts is 1: they must agree", refused.output)  # fmt: skip
    assert not (tmp_path / "a").exists()
    taken = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b")])
    assert taken.exit_code == 0, taken.output
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["concept_sets"]["n_concepts"] == 3
    heads = {call["n_concepts"] for call in config["model"]["lapify"]}
    assert heads == {3}, config["model"]["lapify"]


@pytest.mark.parametrize(
    ("arch", "size", "match"),
    [
        ("smallcnn", 7, r"one training batch at --image-size 7 does not go through --arch"),
        ("resnet18", 2, r"image_size \(--image-size\) must be an int >= 4, got 2"),
    ],
)
def test_an_image_size_too_small_is_refused_before_the_run_folder(tmp_path, arch, size, match):
    """Before: the first training step failed, leaving config.json and train.log behind."""
    data = _class_only_folder(tmp_path / "images")
    out = tmp_path / "run"
    config = _config(out, data=str(data), n_images=None, arch=arch, image_size=size, lap="none")
    with pytest.raises(ValueError, match=match):
        fit(config)
    assert not out.exists()


def test_a_validation_split_without_a_class_is_said(tmp_path: Path, caplog) -> None:
    """Before: the best epoch was kept on a balanced accuracy of one class, in silence."""
    from torchlap.train.run import _prepare

    data = _class_only_folder(tmp_path / "images")
    rows = ["image,label,split"]
    rows += [f"{n}/{k}.png,{n},train" for n in ("cats", "dogs") for k in range(4)]
    rows += ["cats/4.png,cats,val", "cats/5.png,cats,test", "dogs/5.png,dogs,test"]
    (data / "annotations.csv").write_text("\n".join(rows) + "\n")
    config = _config(tmp_path / "run", data=str(data), n_images=None, supervision="weak")
    with caplog.at_level("WARNING", logger="torchlap.train.run"):
        _prepare(config.with_resolved_data())
    said = [r.getMessage() for r in caplog.records if "has no image of class" in r.getMessage()]
    assert said == [
        "the val split has no image of class(es) ['dogs']: its balanced accuracy averages the "
        "classes it has, and the metrics of a missing class are NaN"
    ]
    assert not (tmp_path / "run").exists()


def test_split_fractions_that_a_split_column_would_override_are_refused(tmp_path: Path) -> None:
    """Before: trained on the CSV's split and recorded the fractions in config.json."""
    data = _class_only_folder(tmp_path / "images")
    rows = ["image,label,split"]
    for name in ("cats", "dogs"):
        rows += [f"{name}/{k}.png,{name},train" for k in range(4)]
        rows += [f"{name}/4.png,{name},val", f"{name}/5.png,{name},test"]
    (data / "annotations.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    config = _config(
        out, data=str(data), n_images=None, data_options={"split_fractions": [0.4, 0.3, 0.3]}
    )
    with pytest.raises(ValueError, match="--data-option split_fractions would be ignored"):
        fit(config)
    assert not out.exists()
