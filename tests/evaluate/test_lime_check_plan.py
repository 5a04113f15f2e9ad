"""Paper 002's LIME check in an evaluation, on untrained models (no run trained): when it runs,
what keys its cache, which model it explains (the note and ``lime_reference`` say so), and
the ``--lime-baseline`` run it is given (refused where the check does not run, else checked
and put in eval mode)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from torchlap.evaluate import lime_check
from torchlap.evaluate.lime_check import (
    lime_applies,
    lime_cache_parts,
    lime_results,
    load_lime_baseline,
)
from torchlap.evaluate.options import EvaluateOptions
from torchlap.models.recipes import build_classifier
from torchlap.runs import LoadedRun

CPU = torch.device("cpu")
CLASSES = ["benign", "malignant"]


def _model(model: str = "lap") -> torch.nn.Module:
    """An untrained small CNN: vanilla (``lap``) or BLA-T (``bla-t``)."""
    torch.manual_seed(0)
    return build_classifier("smallcnn", 2, 3, "none", 4, model=model, image_size=32)[0].eval()


def _options(**fields) -> EvaluateOptions:
    return EvaluateOptions(**({"methods": ("bla",), "lime_images": 2, "lime_samples": 16} | fields))


def _config(model: str = "lap") -> dict:
    record = {"builder": "torchlap.train.SmallCNN", "arch": "smallcnn", "num_classes": 2,
              "in_channels": 3, "lap": "none", "lapify": [], "pretrained": None}  # fmt: skip
    if model != "lap":
        record["blaify"] = {"variant": model}
    return {"model": record, "classes": CLASSES, "in_channels": 3, "image_size": 32}


def _run(folder: Path, model: str = "lap", weights: bytes = b"w") -> LoadedRun:
    """A loaded run in ``folder`` (its weights file holding ``weights``), model in train mode."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(weights)
    return LoadedRun(config=_config(model), classes=CLASSES, mean=[0.5] * 3, std=[0.25] * 3,
                     image_size=32, in_channels=3, concept_sets=None, run_dir=folder,
                     weights=folder / "model.safetensors", model=_model(model).train())  # fmt: skip


def _job(tmp_path: Path, size: int = 32, baseline=None, **fields) -> SimpleNamespace:
    images = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    test = SimpleNamespace(images=images, labels=torch.tensor([1, 0, 1]))
    return SimpleNamespace(options=_options(**fields), model=_model("bla-t"), test=test,
                           device=CPU, lime_baseline=baseline, stamp={"size": 1},
                           data_key="d0", notes={}, out_dir=tmp_path / "out",
                           force=False)  # fmt: skip


@pytest.fixture
def sections(monkeypatch) -> list[tuple]:
    """The arguments of every LIME check computed (``lime_section``, stubbed: ``{"n": i}``)."""
    calls: list[tuple] = []

    def section(model, images, labels, options, device, baseline):
        calls.append((model, images, labels, options, device, baseline))
        return {"n": len(calls)}

    monkeypatch.setattr(lime_check, "lime_section", section)
    return calls


# ------------------------------------------------------------------------- whether it runs


def test_the_check_runs_for_a_bla_model_with_bla_among_the_methods(tmp_path):
    assert lime_applies(_job(tmp_path)) is True
    assert lime_applies(_job(tmp_path, methods=("bla", "gradcam"), lime_images=1)) is True
    assert lime_applies(_job(tmp_path, lime_images=0)) is False
    assert lime_applies(_job(tmp_path, methods=("gradcam",))) is False
    vanilla = _job(tmp_path)
    vanilla.model = _model()
    assert lime_applies(vanilla) is False


def test_a_map_of_one_cell_is_refused_when_the_check_would_run(tmp_path):
    with pytest.raises(ValueError, match=r"a 1x1 feature map of a 8x8 image: one cell"):
        lime_applies(_job(tmp_path, size=8))
    assert lime_applies(_job(tmp_path, size=8, lime_images=0)) is False  # off: not checked


# -------------------------------------------------------------------------------- its cache


def test_the_cache_key_holds_what_the_result_depends_on(tmp_path):
    job = _job(tmp_path)
    parts = lime_cache_parts(job)
    assert set(parts) == {"lime", "options", "weights", "data", "baseline"}
    assert parts["lime"] is True and parts["options"]["methods"] is None
    assert (parts["weights"], parts["data"], parts["baseline"]) == ({"size": 1}, "d0", None)
    assert "lime_options" not in parts["options"]  # a key of its own, only off the defaults
    job.lime_baseline = _run(tmp_path / "base", weights=b"12345")
    assert lime_cache_parts(job)["baseline"]["weights"]["size"] == 5  # (no digest record)
    job.options = _options(lime_options={"weighting": "none"})
    assert lime_cache_parts(job)["lime_options"] == {"weighting": "none"}


def test_the_result_is_cached_and_recomputed_when_asked_or_changed(tmp_path, sections):
    job = _job(tmp_path)
    first, _ = lime_results(job)
    assert first == {"n": 1} and (job.out_dir / "methods" / "lime_spearman.json").is_file()
    assert lime_results(job)[0] == {"n": 1} and len(sections) == 1  # reused
    job.force = True
    assert lime_results(job)[0] == {"n": 2}  # --force recomputes
    job.force, job.data_key = False, "d1"
    assert lime_results(job)[0] == {"n": 3}  # other data: recomputed
    assert lime_results(job)[0] == {"n": 3}


# ------------------------------------------------------------------ which model it explains


def test_without_a_baseline_the_check_explains_the_bla_model_itself(tmp_path, sections, caplog):
    job = _job(tmp_path)
    with caplog.at_level(logging.INFO, logger="torchlap.evaluate.lime_check"):
        _, reference = lime_results(job)
    assert reference == {"model": "the BLA model itself"}
    (note,) = job.notes["bla"]
    assert "computed on the BLA model itself" in note and "--lime-baseline RUN" in note
    assert note in caplog.messages
    ((model, images, labels, options, device, baseline),) = sections
    assert model is job.model and images is job.test.images and baseline is None
    assert labels is None and options is job.options and device == CPU  # target: prediction


def test_with_a_baseline_the_check_explains_it_and_names_it(tmp_path, sections):
    run = _run(tmp_path / "runs" / "vanilla")
    job = _job(tmp_path, baseline=run, target="label")
    job.notes["bla"] = ["an earlier note"]
    _, reference = lime_results(job)
    assert reference == {"model": "baseline run", "run": "vanilla", "run_dir": str(run.run_dir)}
    assert job.notes["bla"][0] == "an earlier note"
    assert job.notes["bla"][1].endswith("computed on the uninterpretable baseline run vanilla")
    ((_, _, labels, _, _, baseline),) = sections
    assert baseline is run.model and labels is job.test.labels  # target: label


# ----------------------------------------------------------------------- --lime-baseline


def test_a_baseline_is_checked_and_put_in_eval_mode(tmp_path):
    bla = _run(tmp_path / "bla", "bla-t")
    assert load_lime_baseline(bla, bla.model, _options(), None, CPU) is None
    baseline = _run(tmp_path / "vanilla")
    assert baseline.model.training
    assert load_lime_baseline(bla, bla.model, _options(), baseline, CPU) is baseline
    assert not baseline.model.training
    other = _run(tmp_path / "other")
    other.config["image_size"] = 64
    with pytest.raises(ValueError, match=r"--lime-baseline \S+other has image_size 64, the BLA"):
        load_lime_baseline(bla, bla.model, _options(), other, CPU)


@pytest.mark.parametrize(
    ("fields", "model"),
    [({"methods": ("gradcam",)}, "bla-t"), ({"lime_images": 0}, "bla-t"), ({}, "lap")],
)
def test_a_baseline_is_refused_where_the_check_does_not_run(tmp_path, fields, model):
    run = _run(tmp_path / "run", model)
    baseline = _run(tmp_path / "vanilla")
    refusal = r"--lime-baseline \S+vanilla: it is the baseline of paper 002's LIME check"
    for given in (baseline, tmp_path / "vanilla"):  # loaded, or a folder: named alike
        with pytest.raises(ValueError, match=refusal):
            load_lime_baseline(run, run.model, _options(**fields), given, CPU)
