"""``fit``'s own steps at their boundaries (torchlap.train.run), each written for a mutant of
run.py the other train tests let through: device checks, the dry folder check before the data,
the integrity record a new, overwritten or resumed run starts with, the resume point, the
phases' trainers and checkpoints, and the refusal of a checkpoint that is not plain data.

Mostly without training: the Lightning ``Trainer`` is faked where only the settings ``fit``
gives it matter, and a run is stopped right after its ``config.json`` where only that file
matters."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from safetensors.torch import load_file
from train_configs import fake_run_folder, tiny_config

import torchlap.train.run as run
from torchlap.data import load_dataset
from torchlap.train import PhaseConfig, RunFolderError, fit
from torchlap.train.checkpoint import AtomicCheckpoint
from torchlap.train.folder import mark_run_config, run_config_written


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _listing(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def _no_accelerator() -> bool:
    return not torch.cuda.is_available() and not torch.backends.mps.is_available()


def _fake_cuda(monkeypatch: pytest.MonkeyPatch, count: int = 2) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


# ----------------------------------------------------------------------- devices, accelerators
@pytest.mark.skipif(not _no_accelerator(), reason="the machine has CUDA or MPS")
def test_device_ids_with_accelerator_auto_on_a_cpu_only_machine_are_refused(tmp_path: Path):
    """``auto`` is the CPU on a machine without CUDA/MPS: device ids are the CPU's there too."""
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"--devices '0,1' lists device ids, which the CPU does"):
        fit(tiny_config(out, accelerator="auto", devices="0,1"))
    assert not out.exists()


def test_device_ids_pass_the_launch_check_when_auto_finds_an_accelerator(tmp_path: Path) -> None:
    run._check_launch(tiny_config(tmp_path, accelerator="auto"), [0, 1], accelerated=True)
    with pytest.raises(ValueError, match=r"lists device ids, which the CPU does not have"):
        run._check_launch(tiny_config(tmp_path, accelerator="cpu"), [0, 1], accelerated=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has CUDA")
@pytest.mark.parametrize("accelerator", ["cuda", "gpu"])
def test_a_cuda_accelerator_without_cuda_is_named_as_such(tmp_path: Path, accelerator: str):
    run._check_engine_names(accelerator, "auto")  # a name Lightning knows: the next check says
    out = tmp_path / "run"
    with pytest.raises(
        ValueError, match=rf"--accelerator '{accelerator}': no CUDA device is available here"
    ):
        fit(tiny_config(out, accelerator=accelerator))
    assert not out.exists()


@pytest.mark.parametrize("accelerator", ["tpu", "mps"])
def test_an_accelerator_this_machine_lacks_is_refused(accelerator: str) -> None:
    from lightning.pytorch.accelerators import AcceleratorRegistry

    engine = dict.get(AcceleratorRegistry, accelerator, {}).get("accelerator")  # (a class)
    if engine is None or engine.is_available():
        pytest.skip(f"{accelerator} is available here (or unknown to this Lightning)")
    with pytest.raises(ValueError, match=rf"--accelerator '{accelerator}': this machine has no"):
        run._check_engine_names(accelerator, "auto")
    run._check_engine_names("cpu", "auto")  # there is always a CPU


def test_uses_cuda_follows_the_accelerator_and_auto_what_is_there(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    seen = {name: run._uses_cuda(name) for name in ("cpu", "auto", "gpu", "cuda")}
    assert seen == {"cpu": False, "auto": False, "gpu": True, "cuda": True}
    _fake_cuda(monkeypatch)
    seen = {name: run._uses_cuda(name) for name in ("cpu", "auto", "gpu", "cuda")}
    assert seen == {"cpu": False, "auto": True, "gpu": True, "cuda": True}


def test_cpu_process_counts_up_to_the_usable_cores(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(run, "usable_cpu_cores", lambda: 2)
    for devices, world in (("auto", 1), ("1", 1), ("2", 2)):
        config = tiny_config(tmp_path, devices=devices)
        parsed = run.parse_devices(devices, allow_auto=True)
        assert run._check_devices(config, parsed) == world, devices
    with pytest.raises(
        ValueError,
        match=r"--devices '3' asks for 3 processes but this machine has 2 CPU cores; pass "
        r"--devices between 1 and 2",
    ):
        run._check_devices(tiny_config(tmp_path, devices="3"), 3)


def test_cuda_device_ids_are_checked_against_the_devices_there(tmp_path, monkeypatch) -> None:
    """With (faked) CUDA: ids 0 and 1 of two devices pass, id 2 does not exist; ``auto`` takes
    every device."""
    _fake_cuda(monkeypatch, count=2)
    for accelerator in ("auto", "gpu"):
        config = tiny_config(tmp_path, accelerator=accelerator, devices="0,1")
        assert run._check_devices(config, [0, 1]) == 2
        assert run._check_devices(config, [1]) == 1
        assert run._check_devices(tiny_config(tmp_path, accelerator=accelerator), "auto") == 2
        with pytest.raises(ValueError, match=r"asks for 2 processes but this machine has 2 CUDA"):
            run._check_devices(
                tiny_config(tmp_path, accelerator=accelerator, devices="0,2"), [0, 2]
            )
    with pytest.raises(ValueError, match=r"asks for 3 processes but this machine has 2 CUDA"):
        run._check_devices(tiny_config(tmp_path, accelerator="gpu", devices="3"), 3)


# --------------------------------------------------------- what fit checks before the data
def _no_data(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(config: Any) -> None:
        raise AssertionError("the data was loaded before the folder was checked")

    monkeypatch.setattr(run, "load_splits", refuse)


@pytest.mark.parametrize("devices", ["1", "auto"])
def test_a_folder_of_other_files_is_refused_before_the_data_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, devices: str
) -> None:
    _no_data(monkeypatch)
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match=r"not empty and holds no torchlap run"):
        fit(tiny_config(out, devices=devices))
    with pytest.raises(RunFolderError, match=r"--resume: .* holds no run \(no config\.json\)"):
        fit(tiny_config(tmp_path / "nothing", resume=True))
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, r"epochs \(--epochs\) must be an int from 1 to 100000, got 0"),
        ({"seed": -1}, r"seed must be an int from 0 to 4294967295, got -1"),
    ],
)
def test_bad_settings_are_refused_before_the_folder_and_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, changes: dict, message: str
) -> None:
    _no_data(monkeypatch)
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        fit(tiny_config(out, **changes))
    assert not out.exists()
    with pytest.raises(TypeError, match=r"fit expects a TrainConfig, got dict"):
        fit(tiny_config(out).to_dict())  # type: ignore[arg-type]


def test_a_fit_forgets_the_config_json_an_earlier_fit_wrote(tmp_path, monkeypatch) -> None:
    """The log of ``torchlap train`` opens in a folder once this fit wrote its config.json: a
    mark left by an earlier fit must not open it for a run refused before writing."""
    _no_data(monkeypatch)
    out = fake_run_folder(tmp_path / "run")
    mark_run_config(out)  # an earlier fit of this process wrote it
    with pytest.raises(RunFolderError, match=r"already holds this run"):
        fit(tiny_config(out))
    assert not run_config_written(out)


def test_the_check_before_the_data_removes_nothing(tmp_path: Path, monkeypatch) -> None:
    """``--overwrite`` clears the old run only once the new one is ready to be written: a run
    failing while its data loads leaves the old run whole."""
    _no_data(monkeypatch)
    out = fake_run_folder(tmp_path / "run", checkpoints={"phase1": b"ckpt"})
    before = _listing(out)
    with pytest.raises(AssertionError, match=r"the data was loaded"):
        fit(tiny_config(out, overwrite=True))
    assert _listing(out) == before


def test_every_process_gets_a_validation_and_test_image_or_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run, "_check_devices", lambda config, devices: 10**6)
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"the val split has \d+ image\(s\) for 1000000 process"):
        fit(tiny_config(out))
    assert not out.exists()


class _OddNormalization:
    """A recipe whose normalization has ``counts`` entries (mean, std), else the real one."""

    def __init__(self, recipe: Any, counts: tuple[int, int]) -> None:
        self.recipe, self.counts = recipe, counts

    def __getattr__(self, name: str) -> Any:
        return getattr(self.recipe, name)

    def normalization(self, mean: Any, std: Any) -> tuple[list[float], list[float]]:
        return [0.5] * self.counts[0], [0.25] * self.counts[1]


@pytest.mark.parametrize("counts", [(1, 2), (2, 1)])
def test_a_normalization_not_of_the_datas_channels_is_refused(tmp_path, monkeypatch, counts):
    real = run.recipe_for
    monkeypatch.setattr(run, "recipe_for", lambda *a: _OddNormalization(real(*a), counts))
    out = tmp_path / "run"
    # (lesions: grayscale)
    expected = rf"the dataset's mean/std have {counts[0]}/{counts[1]} entries for 1 channels"
    with pytest.raises(ValueError, match=expected):
        fit(tiny_config(out))
    assert not out.exists()


def test_per_head_hidden_channels_need_more_than_one_head(tmp_path, monkeypatch) -> None:
    """Two classes give one concept head by default: per-head hidden channels are then the
    shared ones, refused before the folder; with two heads (``n_concepts``) the model is built."""
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"--head-hidden per_head .* one head \(2 classes, n_c"):
        fit(tiny_config(out, lap="auto", head_hidden="per_head"))
    assert not out.exists()

    def built(*args: Any) -> None:
        raise _StopError

    monkeypatch.setattr(run, "build_for_training", built)
    with pytest.raises(_StopError):  # past the check: the model is being built
        fit(tiny_config(out, lap="auto", head_hidden="per_head", n_concepts=2))


def test_one_training_sample_goes_through_the_model_alone() -> None:
    """The check before the run takes two samples, or the one a training split has."""
    train = load_dataset("lesions", split="train", image_size=32, n_images=40, seed=0)
    assert train.n_channels == 1
    model = torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(1, 2)
    )
    run._check_one_batch(model, [train[0]], tiny_config("unused"))
    with pytest.raises(ValueError, match=r"one training batch at --image-size 32 does not go"):
        run._check_one_batch(torch.nn.Linear(5, 2), [train[0], train[1]], tiny_config("unused"))


# ------------------------------------------------ the record a run starts its config.json with
class _StopError(Exception):
    pass


def _stop_after_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stop ``fit`` right after it wrote the run's config.json (before any training)."""

    def stop(*args: Any) -> None:
        raise _StopError

    monkeypatch.setattr(run, "_metrics_writer", stop)


@pytest.mark.parametrize("kind", ["new", "overwrite", "resume"])
def test_the_integrity_record_a_run_starts_with(tmp_path: Path, monkeypatch, kind: str) -> None:
    """A new run (in a folder not there yet, its parents too) and an overwrite start an empty
    record; a resumed one keeps the record of the files it resumes."""
    _stop_after_config(monkeypatch)
    record = {"model.safetensors": {"sha256": _sha(b"weights"), "previous": None}}
    if kind == "new":
        out = tmp_path / "a" / "b" / "run"
    else:
        out = fake_run_folder(tmp_path / "run", record)
    with pytest.raises(_StopError):
        fit(tiny_config(out, **({kind: True} if kind != "new" else {})))
    written = json.loads((out / "config.json").read_text())
    assert written["integrity"] == (record if kind == "resume" else {})
    assert run_config_written(out)  # the folder holds this run now: its log file may open
    if kind == "overwrite":  # the old run's files went before the new config.json came
        assert sorted(p.name for p in out.iterdir()) == ["config.json"]


def test_the_run_seeds_itself_whatever_the_callers_random_state(tmp_path, monkeypatch) -> None:
    """The model's first weights come from the run's seed, not from the caller's generator;
    the data loaders' workers are seeded too (Lightning's PL_SEED_WORKERS, during the run)."""
    seen: list[tuple[dict[str, torch.Tensor], str | None]] = []

    def stop(config: Any, prepared: Any, write: Any) -> None:
        state = {k: v.clone() for k, v in prepared.model.state_dict().items()}
        seen.append((state, os.environ.get("PL_SEED_WORKERS")))
        raise _StopError

    monkeypatch.setattr(run, "_classifier_module", stop)
    for caller_seed in (1, 2):
        torch.manual_seed(caller_seed)
        with pytest.raises(_StopError):
            fit(tiny_config(tmp_path / f"run{caller_seed}", seed=5))
    (first, workers), (second, _) = seen
    assert workers == "1" and first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0)


# ------------------------------------------------------------------------------ the resume point
def _phases_run(tmp_path: Path, record: object, checkpoints: dict[str, bytes]) -> Path:
    return fake_run_folder(tmp_path / "run", record, checkpoints)


@pytest.mark.parametrize("integrity", ["unset", {}, "recorded"])
def test_the_resume_point_is_the_latest_phase_checkpoint(tmp_path: Path, integrity) -> None:
    checkpoints = {"phase1": b"one", "phase2": b"two", "phase3": b"beyond the run's phases"}
    if integrity == "recorded":
        integrity = {
            f"checkpoints/{name}/last.ckpt": {"sha256": _sha(data), "previous": None}
            for name, data in checkpoints.items()
        }
    out = _phases_run(tmp_path, integrity, checkpoints)
    resume = tiny_config(out, resume=True)
    ckpt = out / "checkpoints" / "phase{}" / "last.ckpt"
    assert run._resume_point(resume, 2) == (1, Path(str(ckpt).format(2)))
    assert run._resume_point(resume, 1) == (0, Path(str(ckpt).format(1)))
    (out / "checkpoints" / "phase2" / "last.ckpt").unlink()
    assert run._resume_point(resume, 2) == (0, Path(str(ckpt).format(1)))
    assert run._resume_point(tiny_config(out), 2) == (0, None)  # not a --resume: the start


def test_a_resume_without_a_checkpoint_starts_from_the_beginning(tmp_path: Path) -> None:
    out = fake_run_folder(tmp_path / "run")
    assert run._resume_point(tiny_config(out, resume=True), 2) == (0, None)


def test_the_resume_point_names_a_checkpoint_changed_since_the_folder_check(tmp_path) -> None:
    record = {"checkpoints/phase1/last.ckpt": {"sha256": _sha(b"one"), "previous": None}}
    out = _phases_run(tmp_path, record, {"phase1": b"replaced since"})
    with pytest.raises(ValueError, match=r"phase1/last\.ckpt is damaged or was changed"):
        run._resume_point(tiny_config(out, resume=True), 1)


# --------------------------------------------------------------- the phases and their trainers
class _FakeTrainer:
    def __init__(self, options: dict[str, Any]) -> None:
        self.options, self.interrupted, self.ckpt = options, False, "not fitted"


class _FakeModule:
    def __init__(self, phases: list[PhaseConfig]) -> None:
        self.phases, self.set = phases, []

    def set_phase(self, index: int) -> list[Any]:
        self.set.append(index)
        return []


def _fake_trainers(monkeypatch: pytest.MonkeyPatch, interrupt: bool = False) -> list[Any]:
    made: list[_FakeTrainer] = []

    def trainer(config: Any, devices: Any, **options: Any) -> _FakeTrainer:
        made.append(_FakeTrainer(options))
        return made[-1]

    def fit_(trainer: _FakeTrainer, module: Any, ckpt: str | None) -> None:
        trainer.ckpt, trainer.interrupted = ckpt, interrupt

    monkeypatch.setattr(run, "_trainer", trainer)
    monkeypatch.setattr(run, "_fit", fit_)
    return made


PHASES = [PhaseConfig(1, train="lap"), PhaseConfig(2), PhaseConfig(3, train="fc")]


@pytest.mark.parametrize("resume", [False, True])
def test_each_phase_gets_its_trainer_checkpoint_folder_and_resumes_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resume: bool
) -> None:
    made = _fake_trainers(monkeypatch)
    out = fake_run_folder(tmp_path / "run", checkpoints={"phase2": b"two"})
    module = _FakeModule(PHASES)
    last = run._train_phases(tiny_config(out, resume=resume), module, 1, ["mine"])
    first = 1 if resume else 0  # a --resume starts at its latest checkpoint's phase
    assert module.set == list(range(first, 3)) and last is made[-1] and len(made) == 3 - first
    resumed = str(out / "checkpoints" / "phase2" / "last.ckpt") if resume else None
    assert [t.ckpt for t in made] == [resumed] + [None] * (2 - first)
    for index, trainer in enumerate(made, first):
        options = trainer.options
        (checkpoint,) = options["callbacks"]
        assert isinstance(checkpoint, AtomicCheckpoint)
        assert checkpoint.dirpath == out / "checkpoints" / f"phase{index + 1}"
        assert checkpoint.run_dir == out and options["extra"] == ["mine"]
        assert options["max_epochs"] == PHASES[index].epochs
        assert options["num_sanity_val_steps"] == 0 and options["log_every_n_steps"] == 1
        assert options["sync_batchnorm"] is False  # the CPU


@pytest.mark.parametrize(
    ("devices", "nodes", "sync"),
    [(1, 1, False), ([0], 1, False), (2, 1, True), ([0, 1], 1, True), (1, 2, True)],
)
def test_batch_norm_is_synchronized_across_several_cuda_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, devices: Any, nodes: int, sync: bool
) -> None:
    made = _fake_trainers(monkeypatch)
    monkeypatch.setattr(run, "_uses_cuda", lambda accelerator: True)
    config = tiny_config(tmp_path / "run", num_nodes=nodes)
    run._train_phases(config, _FakeModule(PHASES[:1]), devices, [])
    assert made[0].options["sync_batchnorm"] is sync


def test_an_interrupted_phase_stops_the_run_saying_how_to_resume(tmp_path, monkeypatch) -> None:
    made = _fake_trainers(monkeypatch, interrupt=True)
    with pytest.raises(KeyboardInterrupt, match=r"interrupted; resume it with --resume"):
        run._train_phases(tiny_config(tmp_path / "run"), _FakeModule(PHASES), 1, [])
    assert len(made) == 1  # the next phases do not start


def test_no_phase_left_still_gives_a_trainer_for_the_test(tmp_path, monkeypatch) -> None:
    made = _fake_trainers(monkeypatch)
    trainer = run._train_phases(tiny_config(tmp_path / "run"), _FakeModule([]), 1, [])
    assert made == [trainer] and trainer.options == {}


def test_the_trainer_on_the_cpu_trains_in_32_bit_without_a_logger(tmp_path: Path) -> None:
    trainer = run._trainer(tiny_config(tmp_path / "run"), 1)
    assert trainer.precision == "32-true" and trainer.logger is None


# ------------------------------------------------------------------- Trainer.fit and its refusals
class _Fitting:
    """A trainer whose ``fit`` warns as Lightning does, then raises ``error`` (if any)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.error = error

    def fit(self, module: Any, ckpt_path: str | None, weights_only: bool) -> None:
        self.calls.append((module, ckpt_path, weights_only))
        warnings.warn(
            "You're resuming from a checkpoint that ended before the epoch ended.", stacklevel=1
        )
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, stacklevel=1)
        warnings.warn("a warning of the user's", stacklevel=1)
        if self.error is not None:
            raise self.error


def test_fit_loads_checkpoints_weights_only_and_hides_lightnings_own_warnings() -> None:
    trainer = _Fitting()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run._fit(trainer, "module", "last.ckpt")
    assert trainer.calls == [("module", "last.ckpt", True)]
    assert [str(w.message) for w in caught] == ["a warning of the user's"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "Weights only load failed.\n\nWeightsUnpickler error: Unsupported global: GLOBAL "
            "evil.Payload was not an allowed global\nCheck the recommended steps",
            "WeightsUnpickler error: Unsupported global: GLOBAL evil.Payload was not an allowed "
            "global",
        ),
        ("  \nfirst line\nsecond line", "first line"),
        ("", "refused"),
        ("x" * 300, "x" * 200),
    ],
)
def test_a_checkpoint_holding_more_than_plain_data_is_refused_naming_why(text, reason) -> None:
    trainer = _Fitting(pickle.UnpicklingError(text))
    expected = (
        "--resume: last.ckpt holds objects other than tensors and plain values, which torchlap "
        f"does not unpickle ({reason}); train the run again"
    )
    with pytest.raises(RunFolderError, match=re.escape(expected)), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run._fit(trainer, "module", "last.ckpt")


def test_lightnings_pytree_warning_is_dropped_and_no_other() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run._ignore_lightning_pytree_warning()
        warnings.warn("isinstance(treespec, LeafSpec) is deprecated", FutureWarning, stacklevel=1)
        warnings.warn("isinstance(treespec, LeafSpec) is deprecated", UserWarning, stacklevel=1)
        warnings.warn("another future", FutureWarning, stacklevel=1)
    assert [(w.category, str(w.message)) for w in caught] == [
        (UserWarning, "isinstance(treespec, LeafSpec) is deprecated"),
        (FutureWarning, "another future"),
    ]


# ------------------------------------------------------------------------------ metrics.json
def test_metrics_json_is_running_until_the_test_and_then_names_the_kept_epoch(tmp_path) -> None:
    path = tmp_path / "metrics.json"
    environment = {"threads": 3}
    write = run._metrics_writer(path, ["a", "b"], enabled=True, environment=environment)
    history = [{"phase": 1, "epoch": 1}]
    write(history, None, {"global_epoch": 1})
    assert json.loads(path.read_text()) == {
        "status": "running", "classes": ["a", "b"], "epochs": history, "selected_epoch": None,
        "test": None, "environment": environment,
    }  # fmt: skip
    write(history, {"accuracy": 0.5}, {"global_epoch": 1})
    written = json.loads(path.read_text())
    assert written["status"] == "finished" and written["selected_epoch"] == {"global_epoch": 1}
    assert written["test"] == {"accuracy": 0.5}
    other = tmp_path / "other.json"
    run._metrics_writer(other, ["a", "b"], enabled=False, environment=environment)(history)
    assert not other.exists()


# ------------------------------------------------------------------- the epoch a run keeps
class _WorseSecondEpoch(L.Callback):
    """Keeps the weights validated after epoch 1; before epoch 2's validation, makes the
    classifier predict class 0 for everything with certainty (a cross-entropy of about 100
    per image of class 1), so that epoch 1 is the best."""

    def __init__(self) -> None:
        self.first: dict[str, torch.Tensor] = {}

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        if trainer.current_epoch == 0:
            self.first = {k: v.clone() for k, v in pl_module.model.state_dict().items()}
        else:
            last = [m for m in pl_module.model.modules() if isinstance(m, torch.nn.Linear)][-1]
            with torch.no_grad():
                last.weight.zero_()
                last.bias.copy_(torch.tensor([100.0, -100.0]))


def test_a_run_saves_and_tests_the_kept_epochs_weights_not_the_last(tmp_path: Path) -> None:
    """Paper 000, appendix: "We selected the model related to the epoch with the best
    performance on validation data as the final model"; Lightning's pytree warning is not
    passed on (fit and test)."""
    callback = _WorseSecondEpoch()
    config = tiny_config(tmp_path / "run", epochs=2, select_metric="cross_entropy")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fit(config, callbacks=[callback])
    assert not [w for w in caught if "LeafSpec" in str(w.message)]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["selected_epoch"]["global_epoch"] == 1
    assert metrics["epochs"][1]["val"]["loss_cross_entropy"] > 10  # (the worse epoch)
    saved = load_file(str(out / "model.safetensors"))
    assert saved.keys() == callback.first.keys()
    for key, value in callback.first.items():
        torch.testing.assert_close(saved[key], value, rtol=0, atol=0)
