"""``torchlap demo``: both suites end to end at a toy size (the real size is timed by hand)."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from torchlap.cli import app
from torchlap.demo import (
    CHECK_METHODS,
    SUITE_METHODS,
    SUITES,
    DemoSettings,
    run_demo,
    suite_runs,
)
from torchlap.models.bcos import bcos_available

TINY = DemoSettings(
    image_size=32, n_images=60, epochs=1, eval_images=8, val_images=8, stability_images=4,
    rise_masks=50, arch="smallcnn", sanity=False, grid_pg=False, bcos=False,
)  # fmt: skip


@pytest.mark.skipif(not bcos_available(), reason="the bcos extra is not installed")
def test_main_suite_adds_bcos_and_runs_the_checks_on_cheap_methods(tmp_path: Path) -> None:
    settings = dataclasses.replace(TINY, sanity=True, sanity_images=2, grid_pg=True, bcos=True)
    assert [name for name, _ in suite_runs("main", settings)][-1] == "bcos"
    run_demo(tmp_path, settings, methods=("lap", "gradcam", "rise", "bcos"))
    comparison = json.loads((tmp_path / "comparison.json").read_text())
    runs = comparison["runs"]
    assert list(runs) == ["vanilla", "ws-lap", "bb-lap", "bcos"]
    config = json.loads((tmp_path / "runs" / "bcos" / "config.json").read_text())
    assert config["model"]["builder"] == "torchlap.models.bcos"
    assert "bcos" in runs["bcos"]["localization"] and "bcos" in runs["vanilla"]["skipped"]
    # the checks run for the own maps and gradient methods, not for RISE (CHECK_METHODS)
    assert set(runs["ws-lap"]["sanity"]) == {"lap", "gradcam"}
    assert set(runs["bcos"]["sanity"]) == {"bcos", "gradcam"}
    assert "rise" in runs["ws-lap"]["localization"] and "rise" not in CHECK_METHODS
    for run in runs.values():
        assert "grid_pointing_setup" in run


def test_demo_check_methods_are_the_own_maps_and_gradient_methods() -> None:
    assert set(CHECK_METHODS) == {
        "lap", "bla", "antehoc", "bcos", "gradcam", "guided_gradcam", "guided_backprop",
        "deeplift", "relevance_cam",
    }  # fmt: skip
    assert SUITE_METHODS["peers"] == CHECK_METHODS == SUITE_METHODS["main"]


def test_demo_defaults_keep_no_lap_map_coarser_than_4x4() -> None:
    # issue 12: 128 px, the smallest size at which the paper's ResNet18 preset has no LAP map
    # coarser than 4x4 before the global pool (stem /4, then LAP halves at layers 2-4)
    size = DemoSettings().image_size
    assert size // 4 // 2**3 >= 4 and (size // 2) // 4 // 2**3 < 4


def test_demo_perturbation_adds_scorecam_rise_and_sise(tmp_path: Path) -> None:
    settings = dataclasses.replace(TINY, perturbation=True, n_images=40, eval_images=4,
                                   val_images=4, stability_images=1, rise_masks=8)  # fmt: skip
    run_demo(tmp_path, settings)
    runs = json.loads((tmp_path / "comparison.json").read_text())["runs"]
    for method in ("scorecam", "rise", "sise", "lap", "guided_backprop"):
        assert method in runs["bb-lap"]["localization"], method
    options = runs["bb-lap"]["options"]["method_options"]
    assert options["rise"]["n_masks"] == 8


def test_demo_without_perturbation_skips_scorecam_rise_and_sise(tmp_path: Path) -> None:
    settings = dataclasses.replace(TINY, n_images=40, eval_images=4, val_images=4,
                                   stability_images=1)  # fmt: skip
    run_demo(tmp_path, settings)
    runs = json.loads((tmp_path / "comparison.json").read_text())["runs"]
    localization = runs["bb-lap"]["localization"]
    assert "lap" in localization and "guided_backprop" in localization
    assert not {"scorecam", "rise", "sise"} & set(localization)


def test_peer_suite_trains_every_model_and_compares_them(tmp_path: Path) -> None:
    report = run_demo(tmp_path, TINY, methods=("lap", "bla", "antehoc", "gradcam"), suite="peers")
    names = [name for name, _ in SUITES["peers"]]
    assert names == ["vanilla", "ws-lap", "bb-lap", "bla", "bla-t", "bla-ph", "l2x-f", "antehoc"]
    assert report == tmp_path / "report.html" and report.is_file()
    runs = json.loads((tmp_path / "comparison.json").read_text())["runs"]
    assert list(runs) == names
    for name in names:  # every run has its model metrics and Grad-CAM's localization
        assert runs[name]["model"]["accuracy"]["value"] is not None
        assert "gradcam" in runs[name]["localization"]
    own = {"ws-lap": "lap", "bb-lap": "lap", "antehoc": "antehoc"}
    for name in names:  # each run's own maps are evaluated, the others' skipped with a reason
        method = own.get(name, "bla" if name.startswith(("bla", "l2x")) else None)
        for candidate in ("lap", "bla", "antehoc"):
            if candidate == method:
                assert candidate in runs[name]["localization"], (name, candidate)
            else:
                assert candidate in runs[name]["skipped"], (name, candidate)
    for name in names:  # paper 002's LIME check runs for the BLA-family models only
        lime = runs[name].get("lime_spearman")
        if name.startswith(("bla", "l2x")):
            assert set(lime) == {"bla", "gradcam", "grid", "patch", "n_samples", "seconds"}
            n_test = runs[name]["data"]["n_images"]  # 6 < lime_images = 8
            assert (
                lime["patch"] == "8"
                and lime["grid"] == [4, 4]
                and lime["bla"]["n"] + lime["bla"]["n_excluded"] == n_test
            )
            assert -1 <= (lime["gradcam"]["value"] or 0) <= 1
        else:
            assert lime is None
    assert "LIME rank correlation" in (tmp_path / "tables.md").read_text()
    config = json.loads((tmp_path / "runs" / "bla-ph" / "config.json").read_text())
    assert config["model"]["pretrained"] == str(tmp_path / "runs" / "vanilla")
    tables = (tmp_path / "tables.md").read_text()
    for name in names:
        assert f"| {name} |" in tables


def test_demo_refuses_unknown_suite_and_data(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown suite 'all'; expected one of main, peers"):
        run_demo(tmp_path, TINY, suite="all")
    runner = CliRunner()
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "a"), "--suite", "all"])
    assert result.exit_code == 2 and "unknown --suite 'all'" in result.output
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "a"), "--data", "cifar"])
    assert result.exit_code == 2 and "concepts, digits, lesions" in result.output
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "a"), "--image-size", "16"])
    assert result.exit_code == 2 and "--image-size must be >= 32 px" in result.output
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "a"), "--lr", "0"])
    assert result.exit_code == 2 and "--lr must be > 0" in result.output
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("scale", ["inf", "1e308", "nan", "101", "0", "-1"])
def test_demo_refuses_a_scale_it_cannot_turn_into_image_counts(tmp_path: Path, scale: str) -> None:
    """--scale inf / 1e308 failed with `cannot convert float infinity to integer`, exit 1."""
    with pytest.raises(
        (ValueError, TypeError), match=r"scale must be a finite number in \(0, 100\]"
    ):
        DemoSettings().scaled(float(scale))
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "a"), "--scale", scale])
    assert result.exit_code == 2, result.output
    assert "scale must be a finite number in (0, 100]" in result.output
    assert not (tmp_path / "a").exists()


def test_demo_never_appends_to_a_users_demo_log(tmp_path: Path, monkeypatch) -> None:
    """The demo appended its log to the user's own demo.log in --out."""
    import torchlap.demo_cli as demo_cli

    out = tmp_path / "out"
    out.mkdir()
    (out / "demo.log").write_text("my notes\n")
    ran: list[Path] = []

    def fake_demo(folder, settings, overwrite, suite, on_checked):
        on_checked()  # (the demo's folders passed their checks: its log opens)
        ran.append(Path(folder))
        logging.getLogger("torchlap.demo").info("the demo ran")
        return Path(folder) / "report.html"

    monkeypatch.setattr(demo_cli, "run_demo", fake_demo)
    result = CliRunner().invoke(app, ["demo", "--out", str(out)])
    assert result.exit_code == 2
    assert "demo.log, which torchlap did not write" in result.output
    assert (out / "demo.log").read_text() == "my notes\n" and ran == []
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    log = (out / "demo.log").read_text()
    assert "my notes" not in log and "the demo ran" in log
    result = CliRunner().invoke(app, ["demo", "--out", str(out)])  # torchlap's own: appended
    assert result.exit_code == 0, result.output
    assert (out / "demo.log").read_text().count("the demo ran") == 2


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("blocked", ["ws-lap", "bb-lap"])
def test_demo_checks_every_run_folder_before_the_first_run_trains(
    tmp_path: Path, monkeypatch, blocked: str, overwrite: bool
) -> None:
    """Before: a folder of the user's files at out/runs/<run> was refused only when that run's
    turn came, after the runs before it had trained (with --overwrite, after their old runs
    were deleted). Now nothing trains and nothing is touched."""
    import torchlap.demo as demo
    from torchlap.runs import RunFolderError
    from torchlap.train.folder import prepare_folder

    trained: list[str] = []

    def fit(config):  # fit's own refusal of the folder, then a stand-in for the training
        prepare_folder(Path(config.out), config, apply=False)
        trained.append(Path(config.out).name)

    monkeypatch.setattr(demo, "fit", fit)
    mine = tmp_path / "runs" / blocked / "notes.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("mine\n")
    with pytest.raises(RunFolderError, match=rf"runs/{blocked} is not empty and holds no"):
        run_demo(tmp_path, TINY, overwrite=overwrite)
    assert trained == [] and mine.read_text() == "mine\n"
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [blocked]


def _finished_runs(out: Path, settings: DemoSettings) -> None:
    """Stand-ins for the main suite's finished runs: weights, and torchlap's config.json with
    the options the demo trains them with (no digest record: weights are not checked)."""
    import torchlap.demo as demo

    for name, options in SUITES["main"]:
        run = out / "runs" / name
        run.mkdir(parents=True)
        (run / "model.safetensors").write_bytes(b"weights")
        config = demo._train_config(name, options, settings, out, False)
        record = {"format": "torchlap-run", "train": config.to_dict()}
        (run / "config.json").write_text(json.dumps(record))


def test_demo_refuses_to_reuse_a_run_of_other_settings_or_damaged_weights(
    tmp_path: Path, monkeypatch
) -> None:
    """A finished run of an earlier demo was reused as it was: a demo with more epochs (or
    another image size...) into the same --out reported the old runs as its own; a run
    whose weights were damaged failed in the comparison, after the other runs had trained."""
    import torchlap.demo as demo
    from torchlap.runs import RunError, RunFolderError

    monkeypatch.setattr(demo, "fit", lambda config: pytest.fail("nothing may train"))
    monkeypatch.setattr(demo, "compare_runs", lambda dirs, *args, **kwargs: list(dirs))
    _finished_runs(tmp_path, TINY)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    longer = dataclasses.replace(TINY, epochs=2)
    with pytest.raises(RunFolderError, match=r"runs/vanilla holds a finished run made with "
                       r"other settings \(differing: \['epochs'\]\).*--overwrite"):  # fmt: skip
        run_demo(tmp_path, longer)
    config = tmp_path / "runs" / "ws-lap" / "config.json"
    record = json.loads(config.read_text())
    record["integrity"] = {"model.safetensors": {"sha256": "0" * 64, "previous": None}}
    config.write_text(json.dumps(record))
    before[config] = config.read_bytes()
    with pytest.raises(RunError, match=r"ws-lap/model\.safetensors is damaged or was changed"):
        run_demo(tmp_path, TINY)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_demo_reuses_finished_runs_and_checks_the_others(tmp_path: Path, monkeypatch) -> None:
    """A finished run (weights and torchlap's config.json) is reused, not checked as a new
    run; weights without torchlap's config.json are no finished run of the demo's."""
    import torchlap.demo as demo
    from torchlap.runs import RunFolderError

    monkeypatch.setattr(demo, "fit", lambda config: pytest.fail("nothing may train"))
    monkeypatch.setattr(demo, "compare_runs", lambda dirs, *args, **kwargs: list(dirs))
    _finished_runs(tmp_path, TINY)
    assert run_demo(tmp_path, TINY) == [tmp_path / "runs" / n for n, _ in SUITES["main"]]
    (tmp_path / "runs" / "bb-lap" / "config.json").write_text("{}")  # not torchlap's
    with pytest.raises(RunFolderError, match=r"holds a config\.json that torchlap train did"):
        run_demo(tmp_path, TINY)


@pytest.mark.parametrize(
    ("methods", "refusal"),
    [(("lap", "nosuch"), r"unknown method\(s\) nosuch"), (("lap", "lap"), r"listed twice")],
)
def test_demo_refuses_bad_methods_before_any_run_trains(
    tmp_path: Path, monkeypatch, methods: tuple[str, ...], refusal: str
) -> None:
    """Before: the comparison's options were built and checked after every run had trained,
    so a bad ``methods`` was refused only then, the runs written."""
    import torchlap.demo as demo

    monkeypatch.setattr(demo, "fit", lambda config: pytest.fail("nothing may train"))
    with pytest.raises(ValueError, match=refusal):
        run_demo(tmp_path / "out", TINY, methods=methods)
    assert not (tmp_path / "out").exists()
