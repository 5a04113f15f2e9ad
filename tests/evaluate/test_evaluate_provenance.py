"""What an evaluation was computed on: the per-method cache follows the evaluated tensors, a
run's own folder keeps its split seed however its path is spelled, compare evaluates every run
on the same images, a BLA run's LIME check runs on the vanilla baseline, a request without any
applicable method is refused, a user's own log is never appended to, and the results record
the software and threads they were computed with."""

from __future__ import annotations

import csv
import json
import logging
import platform
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import torchlap
from torchlap.cli import app
from torchlap.data.export import export_builtin
from torchlap.evaluate import (
    EvaluateOptions,
    bla_comparison,
    compare_runs,
    evaluate_run,
    load_eval_data,
)
from torchlap.evaluate.common import guard_output_folder
from torchlap.evaluate.compare import check_protocols
from torchlap.evaluate.provenance import DataSettings
from torchlap.runs import load_run
from torchlap.train import TrainConfig, fit

QUICK = dict(max_images=4, max_val_images=4, stability_images=1, stability_fractions=(0.1,),
             batch_size=8, ks=(50,), tie_draws=1)  # fmt: skip


def _options(**kwargs) -> EvaluateOptions:
    return EvaluateOptions(**{"methods": ("gradcam",), **QUICK, **kwargs})


def _train(data: Path, out: Path, seed: int = 0, model: str = "lap", lap: str = "none") -> Path:
    config = TrainConfig(
        data=str(data), out=str(out), arch="smallcnn", lap=lap, model=model, epochs=1,
        image_size=32, batch_size=16, seed=seed, supervision="none", progress_bar=False,
    )  # fmt: skip
    return fit(config)


def _drop_split_column(folder: Path) -> None:
    path = folder / "annotations.csv"
    rows = list(csv.reader(path.open()))
    index = rows[0].index("split")
    path.write_text("\n".join(",".join(r[:index] + r[index + 1 :]) for r in rows) + "\n")


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("provenance")
    les = export_builtin("lesions", root / "les", n_images=40, image_size=32)
    shutil.copytree(les, root / "dsA")
    shutil.copytree(les, root / "nosplit")
    _drop_split_column(root / "nosplit")
    return {
        "root": root,
        "les": les,
        "dsA": root / "dsA",
        "nosplit": root / "nosplit",
        "run_dsA": _train(root / "dsA", root / "runs" / "dsA"),
        "run_ns": _train(root / "nosplit", root / "runs" / "ns", seed=3),
        "vanilla": _train(les, root / "runs" / "vanilla"),
        "bla": _train(les, root / "runs" / "bla", model="bla-t", lap="auto"),
    }


# ------------------------------------------------------------------------------- the cache


def test_edited_annotations_miss_the_cache_and_the_log_says_why(setup, tmp_path, caplog):
    out, computed = tmp_path / "stale", []
    first = evaluate_run(setup["run_dsA"], None, out, _options(),
                         on_method=lambda m, s: computed.append(m))  # fmt: skip
    path = setup["dsA"] / "annotations.csv"
    rows = list(csv.DictReader(path.open()))
    for row in rows:  # every test region becomes the top-left quarter
        if row["split"] == "test" and row["x_min"]:
            row.update(x_min="0", y_min="0", x_max="16", y_max="16", mask="")
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with caplog.at_level(logging.INFO, logger="torchlap.evaluate.common"):
        second = evaluate_run(setup["run_dsA"], None, out, _options(),
                              on_method=lambda m, s: computed.append(m))  # fmt: skip
    assert computed == ["gradcam", "gradcam"]
    assert first["data"]["fingerprint"] != second["data"]["fingerprint"]
    lines = [r.getMessage() for r in caplog.records]
    assert any(
        line.startswith("gradcam: recomputing, the evaluated data (images, labels or region")
        for line in lines
    ), lines
    evaluate_run(setup["run_dsA"], None, out, _options(), on_method=lambda m, s: computed.append(m))
    assert computed == ["gradcam", "gradcam"]  # unchanged data: reused


# -------------------------------------------------------------------------- data and splits


def test_the_run_own_folder_keeps_its_split_seed_however_spelled(setup, monkeypatch):
    monkeypatch.chdir(setup["root"])
    run = load_run(setup["run_ns"])
    spellings = ("nosplit", "./nosplit", str(setup["nosplit"]), "runs/../nosplit")
    read = [load_eval_data(run, s, "test", None) for s in spellings]
    for data in read:
        assert data.settings.seed == 3 and data.settings.own
        torch.testing.assert_close(data.images, read[0].images)
    other_seed = load_eval_data(run, "nosplit", "test", None, settings=DataSettings(seed=0))
    assert not torch.equal(other_seed.images, read[0].images)  # the seed decides the split


def test_other_data_states_the_split_seed(setup, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="torchlap.evaluate.core"):
        results = evaluate_run(setup["run_ns"], str(setup["les"]), tmp_path / "ev", _options())
    assert results["data"]["seed"] == 0 and results["data"]["own_training_settings"] is False
    (note,) = results["notes"]["data"]
    assert "not the run's training data" in note and "split seed 0" in note
    assert any("split seed 0" in r.getMessage() for r in caplog.records)


def _copy_with(run: Path, folder: Path, **train) -> Path:
    shutil.copytree(run, folder)
    config = json.loads((folder / "config.json").read_text())
    config["train"].update(train)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_compare_refuses_runs_split_differently_and_data_evaluates_all_alike(setup, tmp_path):
    other = _copy_with(setup["run_ns"], tmp_path / "seed5", seed=5)
    with pytest.raises(ValueError, match=r"trained on different data \(ns: \S+ seed=3, seed5: "):
        compare_runs([setup["run_ns"], other], None, tmp_path / "refused", _options())
    assert not (tmp_path / "refused").exists()
    # split seed 0 of a folder without a split column: test images the runs trained on
    with pytest.raises(ValueError, match=r"^run ns \(\S+\): \d+ of the 4 images .* learned from"):
        compare_runs([setup["run_ns"], other], str(setup["nosplit"]), tmp_path / "cmp", _options())
    assert not (tmp_path / "cmp").exists()
    # a folder giving each image's split: every run evaluated alike, on images none learned from
    vanilla = _copy_with(setup["vanilla"], tmp_path / "vanilla", seed=0)
    other = _copy_with(setup["vanilla"], tmp_path / "les5" / "seed5", seed=5)
    compare_runs([vanilla, other], str(setup["les"]), tmp_path / "cmp", _options())
    comparison = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    runs = comparison["runs"]
    assert runs["vanilla"]["data"]["fingerprint"] == runs["seed5"]["data"]["fingerprint"]
    assert runs["vanilla"]["data"]["seed"] == runs["seed5"]["data"]["seed"] == 0
    assert "split seed 0" in comparison["data"]["note"]
    tables = (tmp_path / "cmp" / "tables.md").read_text()
    assert "seed5: data: evaluated on" in tables  # (vanilla's own reading: no note)


# -------------------------------------------------------------------------- LIME baseline


def test_compare_passes_the_vanilla_run_as_the_lime_baseline(setup, tmp_path, monkeypatch):
    seen = []
    real = bla_comparison.bla_lime_faithfulness

    def spy(bla_model, images, baseline_model=None, **kwargs):
        seen.append(baseline_model)
        return real(bla_model, images, baseline_model=baseline_model, **kwargs)

    monkeypatch.setattr(bla_comparison, "bla_lime_faithfulness", spy)
    options = _options(methods=("bla", "gradcam"), lime_images=1, lime_samples=16)
    compare_runs([setup["vanilla"], setup["bla"]], None, tmp_path / "cmp", options)
    (baseline,) = seen
    assert baseline is not None
    expected = load_run(setup["vanilla"]).model.state_dict()
    for name, value in baseline.state_dict().items():
        torch.testing.assert_close(value.cpu(), expected[name])
    results = json.loads((tmp_path / "cmp" / "comparison.json").read_text())["runs"]["bla"]
    assert results["lime_reference"]["run"] == "vanilla"
    assert any("baseline run vanilla" in note for note in results["notes"]["bla"])


def test_single_bla_evaluation_names_the_model_lime_explains(setup, tmp_path):
    options = _options(methods=("bla",), lime_images=1, lime_samples=16)
    itself = evaluate_run(setup["bla"], None, tmp_path / "a", options)
    assert itself["lime_reference"] == {"model": "the BLA model itself"}
    assert any("BLA model itself" in note for note in itself["notes"]["bla"])
    with_baseline = evaluate_run(setup["bla"], None, tmp_path / "b", options,
                                 lime_baseline=setup["vanilla"])  # fmt: skip
    assert with_baseline["lime_reference"]["run"] == "vanilla"
    with pytest.raises(ValueError, match=r"--lime-baseline .* is not a vanilla run"):
        evaluate_run(setup["bla"], None, tmp_path / "c", options, lime_baseline=setup["bla"])
    with pytest.raises(ValueError, match=r"--lime-baseline .*bla among --methods"):
        evaluate_run(setup["vanilla"], None, tmp_path / "c", _options(),
                     lime_baseline=setup["vanilla"])  # fmt: skip
    assert not (tmp_path / "c").exists()


def test_a_bla_map_of_one_cell_is_refused_before_any_method_runs(setup, tmp_path, monkeypatch):
    # before, every method ran and wrote its cache, then the LIME check refused the 1x1 map
    monkeypatch.setattr(bla_comparison, "_soft_map", lambda model, images: torch.ones(1, 1, 1))
    options = _options(methods=("bla", "gradcam"), lime_images=1, lime_samples=16)
    with pytest.raises(ValueError, match=r"1x1 feature map .*: one cell.*\(--lime-images 0\)"):
        evaluate_run(setup["bla"], None, tmp_path / "a", options)
    assert not list((tmp_path / "a").glob("methods/*.json"))
    evaluate_run(setup["bla"], None, tmp_path / "b", _options(methods=("bla",), lime_images=0))


def test_compare_refuses_results_of_different_protocols():
    same = {"metrics_revision": 4, "drop_inc_win_binarization": {"normalization": "min_max"}}
    check_protocols({"a": {"protocol": {**same, "lap_concept_sets": None}},
                     "b": {"protocol": {**same, "lap_concept_sets": {"0": [0]}}}})  # fmt: skip
    older = {"metrics_revision": 3, "drop_inc_win_binarization": {"normalization": "max"}}
    with pytest.raises(ValueError, match=r"different protocols \(drop_inc_win_binarization, "):
        check_protocols({"a": {"protocol": same}, "b": {"protocol": older}})


# ------------------------------------------------------------------- methods that apply


def test_no_applicable_method_is_refused_before_any_work(setup, tmp_path, caplog):
    with pytest.raises(ValueError, match=r"no requested method applies to its model: lap \(the "):
        evaluate_run(setup["vanilla"], None, tmp_path / "x", _options(methods=("lap",)))
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match=r"no requested method \(lap\) applies to the model of"):
        compare_runs([setup["vanilla"]], None, tmp_path / "y", _options(methods=("lap",)))
    assert not (tmp_path / "y").exists()
    with caplog.at_level(logging.WARNING, logger="torchlap.evaluate.core"):
        results = evaluate_run(setup["vanilla"], None, tmp_path / "z",
                               _options(methods=("lap", "gradcam")))  # fmt: skip
    assert list(results["localization"]) == ["gradcam"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w for w in warnings if "skipped" in w] == [
        f"lap: skipped, it does not apply to the model of {setup['vanilla']} (the model has no "
        "LAP layer)"
    ]


# ------------------------------------------------------------------------------ the logs


@pytest.mark.parametrize("name", ["evaluate.log", "compare.log"])
def test_a_user_log_is_refused_unless_forced(tmp_path, name):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / name).write_text("my own notes\n")
    with pytest.raises(FileExistsError, match=rf"holds {name}, which torchlap did not write"):
        guard_output_folder(folder, False)
    assert (folder / name).read_text() == "my own notes\n"
    guard_output_folder(folder, True)  # --force replaces it
    assert not (folder / name).exists()
    line = "2026-01-02 03:04:05,678 INFO torchlap.evaluate.core: lap: skipped\n"
    (folder / name).write_text(line)  # a log torchlap wrote (an interrupted run) is its own
    assert guard_output_folder(folder, False) == []


@pytest.mark.parametrize("name", ["evaluate.log", "compare.log"])
def test_a_log_that_is_a_link_to_nothing_is_refused_and_never_followed(tmp_path, name):
    """Before: exists() is False for a dangling link, so the folder passed and the log was
    appended through the link: a new file at the link's target, outside --out."""
    folder = tmp_path / "out"
    folder.mkdir()
    elsewhere = tmp_path / "elsewhere.txt"
    (folder / name).symlink_to(elsewhere)
    with pytest.raises(FileExistsError, match=rf"holds {name}, which torchlap did not write"):
        guard_output_folder(folder, False)
    guard_output_folder(folder, True)  # --force: the link goes, nothing is made at its target
    assert not (folder / name).is_symlink() and not elsewhere.exists()


def test_a_torchlap_results_file_does_not_vouch_for_a_user_log_or_figure(tmp_path):
    """Before: one results.json of torchlap's made the whole folder torchlap's: a user's log was
    appended to and a user's file in figures/ overwritten."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    folder = tmp_path / "out"
    (folder / "figures").mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"format": "torchlap-results"}))
    mark = PngInfo()
    mark.add_text("Software", "torchlap (matplotlib 3)")
    Image.new("L", (4, 4)).save(folder / "figures" / "keep_k.png", pnginfo=mark)
    assert guard_output_folder(folder, False) == []  # all of it torchlap's
    (folder / "evaluate.log").write_text("my own notes\n")
    with pytest.raises(FileExistsError, match=r"holds evaluate\.log, which torchlap did not"):
        guard_output_folder(folder, False)
    (folder / "evaluate.log").unlink()
    Image.new("L", (4, 4)).save(folder / "figures" / "mine.png")  # no torchlap mark
    with pytest.raises(FileExistsError, match=r"holds mine\.png, which torchlap did not write"):
        guard_output_folder(folder, False)


@pytest.mark.parametrize("content", ["file", "list", "int"])
def test_a_methods_entry_that_is_not_a_folder_of_caches_is_refused(tmp_path, content):
    """Before: a file named ``methods`` (no cache in it to check) and a ``methods/x.json`` list
    holding the word "fingerprint" passed as torchlap's; the file failed only at the first
    cache write, after that method's maps were computed."""
    folder = tmp_path / "out"
    folder.mkdir()
    if content == "file":
        (folder / "methods").write_text("my notes")
    else:
        (folder / "methods").mkdir()
        value = ["fingerprint"] if content == "list" else 5
        (folder / "methods" / "x.json").write_text(json.dumps(value))
    with pytest.raises(FileExistsError, match=r"holds methods, which torchlap did not write"):
        guard_output_folder(folder, False)


@pytest.mark.parametrize("name", ["report.html", "methods", "figures", "compare.log"])
def test_a_run_named_as_a_compare_output_is_refused_before_any_work(tmp_path, name):
    """Before: a run ``report.html`` made ``OUT/report.html`` a folder (IsADirectoryError once
    every run was evaluated), a run ``methods`` or ``figures`` made every rerun refuse ``OUT``;
    and under ``--force`` the output folders' logs were removed before that."""
    runs = [tmp_path / "runs" / "vanilla", tmp_path / "runs" / name]
    for run in runs:
        run.mkdir(parents=True)
    out = tmp_path / "out"
    out.mkdir()
    (out / "evaluate.log").write_text("my own notes\n")
    refusal = r"run folder name\(s\) \['.*'\] are also names compare writes in --out"
    with pytest.raises(ValueError, match=refusal):
        compare_runs(runs, None, out)
    result = CliRunner().invoke(app, ["compare", *map(str, runs), "--out", str(out), "--force"])
    assert result.exit_code == 2 and "are also names compare writes" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["evaluate.log"]  # nothing replaced
    assert (out / "evaluate.log").read_text() == "my own notes\n"


def test_cli_evaluate_does_not_append_to_a_user_log(setup, tmp_path):
    folder = tmp_path / "eo1"
    folder.mkdir()
    (folder / "evaluate.log").write_text("my own notes\n")
    result = CliRunner().invoke(
        app, ["evaluate", "--run", str(setup["vanilla"]), "--out", str(folder), "--methods",
              "gradcam", "--max-images", "2"],
    )  # fmt: skip
    assert result.exit_code != 0
    assert "evaluate.log" in result.output
    assert (folder / "evaluate.log").read_text() == "my own notes\n"
    assert not (folder / "results.json").exists()


def test_compare_refuses_data_of_other_classes_before_evaluating_any_run(setup, tmp_path):
    """Before: the first run was evaluated and its results written, then the second refused."""
    other = tmp_path / "renamed"
    shutil.copytree(setup["vanilla"], other)
    config = json.loads((other / "config.json").read_text())
    config["classes"] = ["cat", "dog"]
    (other / "config.json").write_text(json.dumps(config))
    refusal = r"run renamed \(.*\): '.*' has classes .*, the run was trained on \['cat', 'dog'\]"
    with pytest.raises(ValueError, match=refusal):
        compare_runs([setup["vanilla"], other], str(setup["les"]), tmp_path / "c", _options())
    assert not (tmp_path / "c").exists()


def test_a_rerun_with_fewer_methods_removes_the_figures_of_the_others(setup, tmp_path, caplog):
    """Before: overlays_guided_backprop.png stayed after a rerun without that method (the report
    no longer showed it; the folder held a figure of results it no longer had)."""
    out = tmp_path / "eval"
    both = _options(methods=("gradcam", "guided_backprop"), examples=True)
    evaluate_run(setup["vanilla"], None, out, both)
    assert (out / "figures" / "overlays_guided_backprop.png").is_file()
    with caplog.at_level(logging.INFO, logger="torchlap.evaluate.outputs"):
        evaluate_run(setup["vanilla"], None, out, _options(methods=("gradcam",), examples=True))
    assert not (out / "figures" / "overlays_guided_backprop.png").exists()
    assert (out / "figures" / "overlays_gradcam.png").is_file()
    assert "a figure of an earlier evaluation into this folder" in caplog.text


# ---------------------------------------------------------------------------- environment


def test_results_record_the_software_and_threads_they_were_computed_with(setup, tmp_path):
    results = evaluate_run(setup["run_dsA"], None, tmp_path / "env", _options())
    environment = results["environment"]
    assert json.loads((tmp_path / "env" / "results.json").read_text())["environment"] == (
        environment
    )
    assert environment["lap_pooling"].startswith(("compiled CPU kernel", "pure PyTorch"))
    assert {k: v for k, v in environment.items() if k != "lap_pooling"} == {
        "torchlap": torchlap.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "accelerator": "cpu",
        "precision": "32-true",
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "processes": 1,
    }
