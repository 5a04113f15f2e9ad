"""A whole tiny run: outputs, load_run, phases, resume after a kill, and DDP with 2 processes.

One run (module fixture) is the reference of every test here: the killed-and-resumed run and
the two-process DDP run must reproduce it.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

from torchlap import attention_maps, load_run
from torchlap.data import collate_regions, load_dataset
from torchlap.layers import lap_modules
from torchlap.train import PhaseConfig, TrainConfig, fit

N_IMAGES = 80
PHASES = [PhaseConfig(1, 3e-3, "lap"), PhaseConfig(2, 3e-3, "all")]
REPO = Path(__file__).resolve().parents[2]


def _config(out: Path, **kw: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "data": "lesions",
        "out": str(out),
        "arch": "smallcnn-gn",
        "lap": "auto",
        "supervision": "weak",
        "phases": list(PHASES),
        "image_size": 32,
        "batch_size": 16,
        "n_images": N_IMAGES,
        "seed": 0,
        "progress_bar": False,
        "accelerator": "cpu",
        "devices": "1",
    }
    base.update(kw)
    return TrainConfig(**base)


class _Snapshots(L.Callback):
    """Weights at the start and end of each phase."""

    def __init__(self) -> None:
        self.states: dict[int, dict[str, dict[str, torch.Tensor]]] = {}

    def _grab(self, module: Any, when: str) -> None:
        state = {k: v.detach().clone() for k, v in module.model.state_dict().items()}
        self.states.setdefault(module.phase_index, {})[when] = state

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._grab(pl_module, "start")

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._grab(pl_module, "end")


_WARNINGS: list[warnings.WarningMessage] = []


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, _Snapshots]:
    snapshots = _Snapshots()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fit(_config(tmp_path_factory.mktemp("train") / "single"), callbacks=[snapshots])
    _WARNINGS.extend(caught)
    return out, snapshots


def test_training_does_not_pass_on_lightnings_pytree_warning(
    reference: tuple[Path, _Snapshots],
) -> None:
    """Lightning builds torch's deprecated LeafSpec on every fit and test; users see none of it."""
    assert not [w for w in _WARNINGS if "LeafSpec" in str(w.message)]


def _subprocess(args: list[str], **kw: Any) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=400, **kw)


def test_run_folder_holds_weights_config_metrics(reference: tuple[Path, _Snapshots]) -> None:
    out, _ = reference
    names = {p.name for p in out.iterdir()}
    assert names == {"model.safetensors", "config.json", "metrics.json", "checkpoints"}
    assert not list(out.rglob("*.tmp"))
    config = json.loads((out / "config.json").read_text())
    for key in ("model", "lap_layers", "classes", "mean", "std", "losses", "seed", "train"):
        assert key in config, key
    assert config["model"]["arch"] == "smallcnn-gn" and config["lap_layers"]
    assert config["concept_sets"]["mapping"] == {"0": [], "1": [0]}  # lesion concept: positives
    assert TrainConfig.from_dict(config["train"]).identity() == _config(out).identity()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "finished"
    assert [(e["phase"], e["epoch"]) for e in metrics["epochs"]] == [(1, 1), (2, 1), (2, 2)]
    for record in metrics["epochs"]:
        for split in ("train", "val"):
            assert {"accuracy", "sensitivity", "specificity", "balanced_accuracy"} <= set(
                record[split]
            )
            assert record[split]["loss_discrimination"] > 0
    assert (out / "checkpoints" / "phase2" / "last.ckpt").is_file()


def test_phase_one_trains_only_lap_layers(reference: tuple[Path, _Snapshots]) -> None:
    _, snapshots = reference
    model = load_run(reference[0]).model
    lap_prefixes = tuple(f"{name}." for name in lap_modules(model))
    start, end = snapshots.states[0]["start"], snapshots.states[0]["end"]
    changed = {k for k in start if not torch.equal(start[k], end[k])}
    assert changed and all(k.startswith(lap_prefixes) for k in changed)
    start2, end2 = snapshots.states[1]["start"], snapshots.states[1]["end"]
    assert all(torch.equal(end[k], start2[k]) for k in end)  # phase 2 starts where 1 ended
    assert not torch.equal(start2["net.fc.weight"], end2["net.fc.weight"])


def test_load_run_rebuilds_the_model_without_pickle(
    reference: tuple[Path, _Snapshots], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, _ = reference

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("load_run must not unpickle anything")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    run = load_run(out)
    monkeypatch.undo()
    assert not run.model.training
    assert run.classes == json.loads((out / "config.json").read_text())["classes"]
    test = load_dataset("lesions", split="test", image_size=32, n_images=N_IMAGES, seed=0)
    assert run.in_channels == test.n_channels and run.image_size == 32
    assert run.mean == list(test.mean) and run.std == list(test.std)
    assert run.concept_sets is not None and run.concept_sets.n_concepts == 1
    weights = load_file(str(out / "model.safetensors"))
    for key, value in run.model.state_dict().items():
        assert torch.equal(value, weights[key]), key

    # test metrics recomputed from the reloaded model, by counting
    batch = collate_regions([test[i] for i in range(len(test))])
    with torch.no_grad():
        predictions = run.model(batch["image"]).argmax(1).tolist()
        maps = attention_maps(run.model)
    labels = batch["label"].tolist()
    recalls = []
    for c in range(len(run.classes)):
        members = [i for i, y in enumerate(labels) if y == c]
        recalls.append(sum(1 for i in members if predictions[i] == c) / len(members))
    stored = json.loads((out / "metrics.json").read_text())["test"]
    assert stored["balanced_accuracy"] == pytest.approx(sum(recalls) / len(recalls), abs=1e-6)
    assert set(maps) == set(lap_modules(run.model))
    for lap in maps.values():
        assert lap.score.min() >= 0 and lap.score.max() <= 1


def test_load_run_of_unfinished_run(tmp_path: Path, reference: tuple[Path, _Snapshots]) -> None:
    out = tmp_path / "unfinished"
    out.mkdir()
    (out / "config.json").write_text((reference[0] / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="has not finished"):
        load_run(out)
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        load_run(tmp_path)


KILL_SCRIPT = """
import os, signal, sys
import lightning as L
from torchlap.train import PhaseConfig, TrainConfig, fit

class KillAt(L.Callback):
    # SIGKILL this process after optimizer step {step} of phase 2: no clean-up of any kind
    def on_train_batch_end(self, trainer, module, *args):
        if module.phase_index == 1 and trainer.global_step == {step}:
            os.kill(os.getpid(), signal.SIGKILL)

config = TrainConfig.from_dict({config})
fit(config, callbacks=[KillAt()])
"""


def test_killed_run_resumes_to_the_same_weights(
    tmp_path: Path, reference: tuple[Path, _Snapshots]
) -> None:
    out = tmp_path / "killed"
    steps = len(load_dataset("lesions", split="train", image_size=32, n_images=N_IMAGES)) // 16
    assert steps >= 3
    # checkpoints every 3 steps; killed at step steps + 2 of phase 2, i.e. in its 2nd epoch,
    # after a mid-epoch checkpoint (step 6 when steps = 4) and before the epoch ends
    every, kill = 3, steps + 2 + (1 if (steps + 2) % 3 == 0 else 0)
    config = _config(out, checkpoint_every_n_steps=every)
    script = KILL_SCRIPT.format(step=kill, config=repr(config.to_dict()))
    result = _subprocess([sys.executable, "-c", textwrap.dedent(script)])
    assert result.returncode == -9, result.stderr[-3000:]
    assert not (out / "model.safetensors").exists()
    ckpt = torch.load(out / "checkpoints" / "phase2" / "last.ckpt", weights_only=False)
    assert ckpt["torchlap"]["batches_done"] > 0  # a mid-epoch checkpoint: the hard case

    fit(_config(out, resume=True))
    a = load_file(str(reference[0] / "model.safetensors"))
    b = load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ma = json.loads((reference[0] / "metrics.json").read_text())
    mb = json.loads((out / "metrics.json").read_text())
    assert ma["epochs"] == mb["epochs"] and ma["test"] == mb["test"]


def test_ddp_two_cpu_processes_match_single_process(
    tmp_path: Path, reference: tuple[Path, _Snapshots]
) -> None:
    out = tmp_path / "ddp"
    args = [sys.executable, "-m", "torchlap.cli", "train", "--data", "lesions", "--out", str(out)]
    args += ["--arch", "smallcnn-gn", "--lap", "auto", "--supervision", "weak"]
    args += ["--phase", "lap:1:3e-3", "--phase", "all:2:3e-3", "--image-size", "32"]
    args += ["--batch-size", "16", "--n-images", str(N_IMAGES), "--seed", "0", "--no-progress"]
    args += ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]
    result = _subprocess(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    single = json.loads((reference[0] / "metrics.json").read_text())
    ddp = json.loads((out / "metrics.json").read_text())
    assert len(ddp["epochs"]) == len(single["epochs"])
    # Same global batches (ranks take interleaved halves), group norm (batch-independent);
    # what differs is Eq. 5's per-batch normalization by the number of positives N_c, which
    # each process computes on its half: loss terms differ by ~1e-3 relative, predictions by
    # at most a sample.
    n_val = len(load_dataset("lesions", split="val", image_size=32, n_images=N_IMAGES))
    for a, b in zip(single["epochs"], ddp["epochs"], strict=True):
        assert (a["phase"], a["epoch"]) == (b["phase"], b["epoch"])
        for split in ("train", "val"):
            for key in ("accuracy", "balanced_accuracy"):
                assert b[split][key] == pytest.approx(a[split][key], abs=1 / n_val), (split, key)
            for key in ("loss_total", "loss_cross_entropy", "loss_discrimination"):
                assert b[split][key] == pytest.approx(a[split][key], rel=1e-2), (split, key)
    for key in ("balanced_accuracy", "loss_total"):
        assert ddp["test"][key] == pytest.approx(single["test"][key], rel=1e-2), key
    # Adam moves a weight by about lr per step whatever the gradient's size, so where
    # gradients are tiny the two runs may drift apart by up to ~lr x steps, no more
    n_train = len(load_dataset("lesions", split="train", image_size=32, n_images=N_IMAGES))
    steps = sum(p.epochs for p in PHASES) * math.ceil(n_train / 16)
    bound = max(p.lr for p in PHASES) * steps
    wa = load_file(str(reference[0] / "model.safetensors"))
    wb = load_file(str(out / "model.safetensors"))
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], atol=bound, rtol=0.0)
