"""What a run folder records and how it is read back: the data path (absolute for a folder,
older relative ones resolved), ``config.json``'s keys checked on load, and a LAP run's weights
as ``--pretrained`` of another LAP run."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from safetensors.torch import load_file
from train_configs import tiny_config

from torchlap.data import export_builtin
from torchlap.evaluate.common import load_eval_data
from torchlap.evaluate.explain import explain_files
from torchlap.layers import lap_modules
from torchlap.models.backbones import ModelSpec, build_backbone
from torchlap.runs import RunError, RunFileNotFoundError, load_run, resolve_run_data
from torchlap.train import RunFolderError, TrainConfig, fit
from torchlap.train.folder import prepare_folder

N_IMAGES = 40


@contextmanager
def _cwd(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _config(out: Path | str, **kw: Any) -> TrainConfig:
    return tiny_config(out, **{"n_images": N_IMAGES, **kw})


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LAP run (weak supervision: it has discriminative scorers) trained from ``work/`` on
    the folder ``les`` given as a relative path, into ``runs/r``."""
    work = tmp_path_factory.mktemp("work")
    export_builtin("lesions", work / "les", n_images=N_IMAGES, image_size=32)
    with _cwd(work):
        fit(_config("runs/r", data="les", n_images=None))
    return work / "runs" / "r"


# ------------------------------------------------------------------------ the data path
def test_a_folder_is_recorded_as_its_absolute_path_and_a_builtin_as_its_name(
    folder_run: Path, tmp_path: Path
) -> None:
    config = json.loads((folder_run / "config.json").read_text())
    data = str((folder_run.parents[1] / "les").resolve())
    assert config["train"]["data"] == data and config["data"]["source"] == data
    assert _config("x").with_resolved_data().data == "lesions"
    with _cwd(tmp_path):  # a name that is no folder stays as given, for the loader to name
        assert _config("x", data="nosuch").with_resolved_data().data == "nosuch"
        run = load_run(folder_run)  # read from another directory: the data is found
        test = load_eval_data(run, run.config["train"]["data"], "test", 4)
    assert len(test) == 4


def _legacy_copy(folder_run: Path, root: Path) -> Path:
    """``root/x/runs/ns``: the run as saved before absolute paths, trained from ``root/x`` on
    ``--data nosplit --out runs/ns``."""
    shutil.copytree(folder_run.parents[1] / "les", root / "x" / "nosplit")
    run_dir = root / "x" / "runs" / "ns"
    shutil.copytree(folder_run, run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    config["train"].update(data="nosplit", out="runs/ns")
    (run_dir / "config.json").write_text(json.dumps(config))
    return run_dir


def test_a_relative_data_path_of_an_older_run_is_resolved(
    folder_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = _legacy_copy(folder_run, tmp_path)
    with _cwd(tmp_path):  # the audit's case: `evaluate --run x/runs/ns` from the parent
        run = load_run(Path("x/runs/ns"))
        assert run.config["train"]["data"] == str(tmp_path / "x" / "nosplit")
        assert len(load_eval_data(run, run.config["train"]["data"], "test", 2)) == 2
    (tmp_path / "x" / "runs" / "nosplit").mkdir()  # the run folder's parent: found after cwd
    with _cwd(tmp_path / "x" / "runs"):
        assert resolve_run_data(run_dir, run.config | {"train": {"data": "nosplit"}}) == str(
            tmp_path / "x" / "runs" / "nosplit"
        )
    (tmp_path / "x" / "runs" / "nosplit").rmdir()
    shutil.rmtree(tmp_path / "x" / "nosplit")
    with _cwd(tmp_path), caplog.at_level(logging.WARNING, logger="torchlap.runs"):
        config = json.loads((run_dir / "config.json").read_text())
        with pytest.raises(RunFileNotFoundError, match=r"'nosplit' as a relative path") as error:
            resolve_run_data(run_dir, config)
        assert load_run(run_dir).config["train"]["data"] == "nosplit"  # loads; warns
    message = str(error.value)
    assert f"{tmp_path / 'nosplit'} (the current directory)" in message
    assert f"{tmp_path / 'x' / 'nosplit'} (the folder training ran in)" in message
    assert f"{tmp_path / 'x' / 'runs' / 'nosplit'} (the run folder's parent)" in message
    assert "the run folder's parent" in caplog.text


def test_an_older_run_with_a_relative_data_path_is_the_same_run(
    folder_run: Path, tmp_path: Path
) -> None:
    """Started again from its directory, an older run (relative data) is this run, not a
    different one (``--resume`` compares the recorded settings with the new ones)."""
    run_dir = tmp_path / "runs" / "r"
    shutil.copytree(folder_run, run_dir)
    shutil.copytree(folder_run.parents[1] / "les", tmp_path / "les")
    config = json.loads((run_dir / "config.json").read_text())
    config["train"].update(data="les", out="runs/r")
    (run_dir / "config.json").write_text(json.dumps(config))
    with _cwd(tmp_path):
        again = TrainConfig.from_dict(config["train"]).with_resolved_data()
        assert again.data == str(tmp_path / "les")
        with pytest.raises(RunFolderError, match="already holds this run; pass --resume"):
            prepare_folder(Path("runs/r"), again, apply=False)


# --------------------------------------------------------------------- config.json checks
def _edited(folder_run: Path, tmp_path: Path, edit: Any) -> Path:
    run_dir = tmp_path / "edited"
    shutil.copytree(folder_run, run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    edit(config)
    (run_dir / "config.json").write_text(json.dumps(config))
    return run_dir


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda c: c.update(classes=["a"]),
            r"'classes' names 1 class\(es\) \(\['a'\]\) but the model has 2 outputs",
        ),
        (lambda c: c.pop("classes"), r"lacks the key\(s\) \['classes'\]"),
        (lambda c: c.update(classes="negative"), r"'classes' must be a list of distinct class"),
        (lambda c: c.update(classes=["a", "a"]), r"'classes' must be a list of distinct class"),
        (lambda c: c.update(image_size=32.7), r"'image_size' must be an int from 1 .*got 32.7"),
        (lambda c: c.update(image_size="32"), r"'image_size' must be an int from 1 .*got '32'"),
        (lambda c: c.update(image_size=[32, 48]), r"'image_size' must be .*square pair"),
        (lambda c: c.update(in_channels=True), r"'in_channels' must be an int >= 1"),
        (lambda c: c.update(std=[0.0]), r"'std' must be a list of 1 finite number\(s\)"),
        (lambda c: c.update(mean=[0.1, 0.2]), r"'mean' must be a list of 1 finite number\(s\)"),
        (lambda c: c.update(concept_sets={"x": 1}), r"'concept_sets' must be, in a .*LAP .*what"),
        (lambda c: c.update(discriminative_scorers="yes"), r"'discriminative_scorers' must be"),
    ],
)
def test_bad_config_json_keys_are_named_before_anything_is_written(
    folder_run: Path, tmp_path: Path, edit: Any, message: str
) -> None:
    run_dir = _edited(folder_run, tmp_path, edit)
    config_path = str(run_dir / "config.json")
    with pytest.raises(RunError, match=message) as error:
        load_run(run_dir)
    assert str(error.value).startswith(config_path)
    out = tmp_path / "xo" / "d"
    images = folder_run.parents[1] / "les" / "images" / "test"
    with pytest.raises(RunError, match=message):
        explain_files(run_dir, [images], ["lap"], out)
    assert not (tmp_path / "xo").exists()


def test_a_square_image_size_pair_is_read_as_its_side(folder_run: Path, tmp_path: Path) -> None:
    run_dir = _edited(folder_run, tmp_path, lambda c: c.update(image_size=[32, 32]))
    assert load_run(run_dir).image_size == 32


# ------------------------------------------------------------------ --pretrained LAP run
class _StartWeights(L.Callback):
    """The model's weights at the start of training."""

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.state = {k: v.clone() for k, v in pl_module.model.state_dict().items()}


def test_a_lap_run_is_pretrained_weights_of_a_lap_run(folder_run: Path, tmp_path: Path) -> None:
    grab = _StartWeights()
    out = fit(_config(tmp_path / "pt", pretrained=str(folder_run)), callbacks=[grab])
    stored = load_file(str(folder_run / "model.safetensors"))
    scorers = [k for k in stored if ".discriminative_scorer." in k]
    assert scorers  # the weak-supervision run saved its scorers: they start from them
    for key in scorers:
        torch.testing.assert_close(grab.state[key], stored[key])
    assert load_run(out).config["discriminative_scorers"] is True


def test_a_run_without_scorers_drops_the_pretrained_ones(
    folder_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="torchlap.train.run"):
        out = fit(_config(tmp_path / "pt", pretrained=str(folder_run), supervision="none"))
    assert "dropped the discriminative scorers of layer3.pool, avgpool" in caplog.text
    run = load_run(out)  # its weights match the model its config.json describes
    assert not any(layer.discriminative_scorer for layer in lap_modules(run.model).values())


def test_a_lap_run_into_another_architecture_is_still_refused(
    folder_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "vanilla"
    with pytest.raises(ValueError, match="does not hold weights of this architecture"):
        fit(_config(out, pretrained=str(folder_run), lap="none"))
    assert not out.exists()


def test_a_missing_pretrained_path_is_named_as_a_missing_file(tmp_path: Path) -> None:
    spec = ModelSpec("smallcnn", 2, 1, pretrained=str(tmp_path / "nonexist.safetensors"))
    with pytest.raises(FileNotFoundError, match=r"nonexist\.safetensors': no such file"):
        build_backbone(spec)
    with _cwd(tmp_path), pytest.raises(FileNotFoundError, match="no such file"):
        build_backbone(ModelSpec("smallcnn", 2, 1, pretrained="weights.safetensors"))
    with pytest.raises(ValueError, match="'smallcnn' has no published weights"):
        build_backbone(ModelSpec("smallcnn", 2, 1, pretrained="IMAGENET1K_V1"))


# ------------------------------------------------------------- files torchlap did not write
def test_overwrite_clears_only_torchlaps_own_phase_checkpoints(tmp_path: Path) -> None:
    from torchlap.train.folder import _clear_checkpoints

    folder = tmp_path / "checkpoints"
    for name in ("phase1", "phase2", "phase1-keep", "phase"):
        (folder / name).mkdir(parents=True)
        (folder / name / "last.ckpt").write_bytes(b"weights")
    (folder / "phase1-keep" / "notes.txt").write_text("mine")
    left = _clear_checkpoints(folder)
    assert not (folder / "phase1").exists() and not (folder / "phase2").exists()
    assert (folder / "phase1-keep" / "last.ckpt").read_bytes() == b"weights"
    assert (folder / "phase" / "last.ckpt").exists()
    assert sorted(p.relative_to(folder).as_posix() for p in left) == [
        "phase/last.ckpt",
        "phase1-keep/last.ckpt",
        "phase1-keep/notes.txt",
    ]


def test_explain_after_a_kill_replaces_only_its_own_files(
    folder_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchlap.evaluate.explain as explain_module

    images = folder_run.parents[1] / "les" / "images" / "test"
    real = explain_module._explain_batch
    calls = []

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # a Ctrl-C during the second batch
        return real(*args, **kwargs)

    monkeypatch.setattr(explain_module, "_explain_batch", interrupted)
    out = tmp_path / "ex"
    with pytest.raises(KeyboardInterrupt):
        explain_files(folder_run, [images], ["lap"], out, batch_size=1)
    assert sorted(p.name for p in out.glob("0000*")) == ["00000.npz", "00000.png"]
    # the manifest claimed 00001.png before the kill; the user puts a file there since
    (out / "00001.png").write_text("the user's own figure")
    monkeypatch.setattr(explain_module, "_explain_batch", real)
    with pytest.raises(FileExistsError, match=r"00001\.png"):
        explain_files(folder_run, [images], ["lap"], out, batch_size=1)
    assert (out / "00001.png").read_text() == "the user's own figure"
    (out / "00001.png").unlink()  # without it, the rerun replaces its own 00000.* and goes on
    written = explain_files(folder_run, [images], ["lap"], out, batch_size=1)
    assert len(written) == len(list(images.iterdir()))
