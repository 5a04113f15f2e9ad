"""Resuming and overwriting a run folder safely: older runs without a digest record resume,
a crafted checkpoint is never unpickled, --overwrite deletes only the checkpoints the run wrote,
and a diverging LAP run stops with NonFiniteLossError."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch
from train_configs import tiny_config

from torchlap.layers import attention_maps
from torchlap.losses import ConceptSets, InjectionLoss, enable_discriminative_scorers
from torchlap.models import lapify
from torchlap.models.objectives import InjectionObjective
from torchlap.runs import sha256_file
from torchlap.train import NonFiniteLossError, RunFolderError, fit
from torchlap.train.folder import _clear_checkpoints, prepare_folder
from torchlap.train.wrapping import SmallCNN

CKPT = Path("checkpoints") / "phase1" / "last.ckpt"


class _StopInEpoch2(L.Callback):
    def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.current_epoch == 1:
            raise RuntimeError("stopped")


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-epoch run stopped at the start of epoch 2 (its epoch-1 checkpoint kept)."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    with pytest.raises(RuntimeError, match="stopped"):
        fit(tiny_config(out, epochs=2), callbacks=[_StopInEpoch2()])
    assert (out / CKPT).is_file()
    return out


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


def _edit_config(run: Path, change) -> None:
    config = json.loads((run / "config.json").read_text())
    change(config)
    (run / "config.json").write_text(json.dumps(config))


# ------------------------------------------------------------- runs from before the record
@pytest.mark.parametrize("record", ["absent", "empty"])
def test_a_run_without_a_digest_record_resumes(
    stopped_run: Path, tmp_path: Path, record: str
) -> None:
    """config.json without "integrity" (an older run) used to be rewritten with an empty
    record before training, which then refused its own checkpoint."""
    run = _copy(stopped_run, tmp_path / "old")
    if record == "absent":
        _edit_config(run, lambda c: c.pop("integrity"))
    else:
        _edit_config(run, lambda c: c.__setitem__("integrity", {}))
    fit(tiny_config(run, epochs=2, resume=True))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "finished" and len(metrics["epochs"]) == 2
    integrity = json.loads((run / "config.json").read_text())["integrity"]
    assert integrity["checkpoints/phase1/last.ckpt"]["sha256"] == sha256_file(run / CKPT)


def test_a_run_from_before_balanced_batches_resumes_with_random_batches(
    stopped_run: Path, tmp_path: Path
) -> None:
    run = _copy(stopped_run, tmp_path / "older")
    _edit_config(run, lambda c: c["train"].pop("balanced_batches"))
    with pytest.raises(RunFolderError, match=r"\['balanced_batches'\].*--no-balanced-batches"):
        fit(tiny_config(run, epochs=2, resume=True))  # the default balances every run
    fit(tiny_config(run, epochs=2, resume=True, balanced_batches=False))
    assert json.loads((run / "metrics.json").read_text())["status"] == "finished"


# ---------------------------------------------------------- a crafted checkpoint is refused
class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_crafted_checkpoint_is_never_unpickled(
    stopped_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _copy(stopped_run, tmp_path / "evil")
    marker = tmp_path / "PWNED"
    torch.save({"state_dict": {}, "payload": _Evil(marker)}, run / CKPT)
    digest = sha256_file(run / CKPT)  # recorded, as a folder from someone else would be
    _edit_config(run, lambda c: c["integrity"][CKPT.as_posix()].update(sha256=digest))
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(RunFolderError, match=r"holds objects other than tensors and plain"):
        fit(tiny_config(run, epochs=2, resume=True))
    assert not marker.exists()


# ------------------------------------------------------- --overwrite and checkpoints it kept
def test_overwrite_deletes_only_the_checkpoints_the_record_vouches_for(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "checkpoints"
    for name, data in (("phase1", b"run"), ("phase2", b"mine"), ("phase3", b"changed")):
        (folder / name).mkdir(parents=True)
        (folder / name / "last.ckpt").write_bytes(data)
    digest = sha256_file(folder / "phase1" / "last.ckpt")
    record = {
        "checkpoints/phase1/last.ckpt": {"sha256": digest, "previous": None},
        "checkpoints/phase3/last.ckpt": {"sha256": "0" * 64, "previous": None},
    }
    left = _clear_checkpoints(folder, record)
    assert not (folder / "phase1").exists()
    assert sorted(p.relative_to(folder).as_posix() for p in left) == [
        "phase2/last.ckpt",  # not in the record: a one-phase run did not write it
        "phase3/last.ckpt",  # another SHA-256 than the recorded one
    ]
    # the previous digest counts too (a run killed between recording and renaming)
    (folder / "phase3" / "last.ckpt").write_bytes(b"old")
    record["checkpoints/phase3/last.ckpt"]["previous"] = sha256_file(folder / "phase3/last.ckpt")
    assert [p.parent.name for p in _clear_checkpoints(folder, record)] == ["phase2"]
    # through prepare_folder: the record is read from the run's config.json; a checkpoint at
    # torchlap's naming it does not vouch for is refused before anything is removed (kept,
    # the new run would replace it, or trust it on --resume: tests/train/
    # test_train_overwrite_record.py), a file of another name is kept and logged
    out = tmp_path / "run"
    config = tiny_config(out, seed=1)
    (out / "checkpoints" / "phase2").mkdir(parents=True)
    (out / "checkpoints" / "phase2" / "last.ckpt").write_bytes(b"mine")
    (out / "checkpoints" / "phase1").mkdir()
    (out / "checkpoints" / "phase1" / "last.ckpt").write_bytes(b"run")
    run_record = {"format": "torchlap-run", "train": config.to_dict()}
    run_record["integrity"] = {"checkpoints/phase1/last.ckpt": {"sha256": digest}}
    (out / "config.json").write_text(json.dumps(run_record))
    with pytest.raises(RunFolderError, match=r"phase2/last\.ckpt: torchlap cannot tell it"):
        prepare_folder(out, tiny_config(out, overwrite=True), apply=True)
    assert (out / "checkpoints" / "phase1" / "last.ckpt").read_bytes() == b"run"
    (out / "checkpoints" / "phase2" / "last.ckpt").rename(out / "checkpoints" / "phase2" / "mine")
    with caplog.at_level(logging.WARNING, logger="torchlap.train.folder"):
        prepare_folder(out, tiny_config(out, overwrite=True), apply=True)
    assert (out / "checkpoints" / "phase2" / "mine").read_bytes() == b"mine"
    assert not (out / "checkpoints" / "phase1").exists() and not (out / "config.json").exists()
    assert "phase2/mine in place (torchlap did not write them)" in caplog.text


def test_overwrite_of_a_run_without_a_record_removes_its_phase_checkpoints(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    for name in ("phase1", "phase2"):
        (folder / name).mkdir(parents=True)
        (folder / name / "last.ckpt").write_bytes(b"x")
    assert _clear_checkpoints(folder, {}) == [] and not folder.exists()


# -------------------------------------------------------------- a diverging LAP run
class _PoisonInEpoch2(L.Callback):
    def on_train_batch_start(self, trainer: L.Trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == 1 and batch_idx == 0:
            with torch.no_grad():
                for parameter in pl_module.model.parameters():
                    parameter.fill_(float("nan"))


def test_a_diverging_lap_run_stops_with_non_finite_loss_error(tmp_path: Path) -> None:
    """Its NaN maps used to fail InjectionLoss's input check: a bad-input ValueError (exit 2)
    where a vanilla run gets NonFiniteLossError (resume with a lower learning rate)."""
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"not finite in phase 1 .*epoch 2, batch 1"):
        fit(tiny_config(out, epochs=2), callbacks=[_PoisonInEpoch2()])
    assert (out / CKPT).is_file()  # the epoch-1 checkpoint is kept


class _PoisonAfterLastStep(L.Callback):
    """NaN weights after the last optimizer step of epoch 2: its loss was finite, no later step
    computes one, so only the validation outputs show the divergence."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == 1 and batch_idx + 1 == trainer.num_training_batches:
            with torch.no_grad():
                for parameter in pl_module.model.parameters():
                    parameter.fill_(float("nan"))


def test_a_run_diverging_in_its_last_step_stops_at_validation(tmp_path: Path) -> None:
    """It used to be saved as a finished run (model.safetensors of the kept epoch, exit 0), its
    validation loss NaN, with one batch per epoch at any learning rate that diverges."""
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"validation split are not finite after phase 1 "
                       r"\('all'\), epoch 2"):  # fmt: skip
        fit(tiny_config(out, epochs=2), callbacks=[_PoisonAfterLastStep()])
    assert (out / CKPT).is_file()  # the epoch-1 checkpoint is kept
    assert not (out / "model.safetensors").exists()


def _lap_model() -> torch.nn.Module:
    torch.manual_seed(0)
    net, _ = lapify(SmallCNN(2, 3), "auto")
    enable_discriminative_scorers(net)
    return net


def test_injection_objective_turns_non_finite_outputs_into_a_nan_loss() -> None:
    model = _lap_model()
    objective = InjectionObjective(InjectionLoss(ConceptSets.default(2, 1)))
    batch = {"image": torch.rand(4, 3, 32, 32), "label": torch.tensor([0, 1, 0, 1])}
    loss, terms, _ = objective(model, batch)
    assert torch.isfinite(loss)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    loss, terms, _ = objective(model, batch)
    assert torch.isnan(loss) and torch.isnan(terms["total"])
    assert attention_maps(model) == {}  # the maps (and their graph) are dropped


def test_injection_objective_drops_the_maps_when_the_loss_refuses_its_input() -> None:
    model = _lap_model()
    objective = InjectionObjective(InjectionLoss(ConceptSets.default(2, 1)))
    batch = {"image": torch.rand(4, 3, 32, 32), "label": torch.tensor([0, 1, 0])}
    with pytest.raises(ValueError, match="labels has 3 entries"):
        objective(model, batch)  # finite outputs: the loss's own error, not a NaN loss
    assert attention_maps(model) == {}


def test_config_json_records_whether_batches_were_balanced(stopped_run: Path) -> None:
    config = json.loads((stopped_run / "config.json").read_text())
    assert config["balanced_batches"] is True  # balanced, as the paper's
    assert config["train"]["balanced_batches"] is True
