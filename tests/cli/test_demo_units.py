"""What ``run_demo`` itself decides, with training and the comparison replaced by recorders:
its documented defaults and ``--scale``, the B-cos run, each run's training settings, the
comparison's arguments and options, which finished runs are reused, and its log lines."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import pytest

import torchlap.demo as demo
from torchlap.demo import CHECK_METHODS, SUITES, DemoSettings, run_demo, suite_runs
from torchlap.evaluate import DEFAULT_METHODS

TINY = DemoSettings(
    image_size=32, n_images=60, epochs=1, eval_images=8, val_images=8, stability_images=4,
    rise_masks=50, arch="smallcnn", sanity=False, grid_pg=False, bcos=False,
)  # fmt: skip


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """The demo's calls of ``fit`` (the configs) and ``compare_runs``; nothing trains."""
    calls: dict[str, list] = {"fit": [], "compare": [], "order": []}

    def fit(config: Any) -> Path:
        calls["fit"].append(config)
        calls["order"].append(f"fit {Path(config.out).name}")
        return Path(config.out)

    def compare_runs(run_dirs: Any, data: Any, out: Any, options: Any, force: bool) -> Path:
        calls["compare"].append((list(run_dirs), data, out, options, force))
        return Path(out) / "report.html"

    monkeypatch.setattr(demo, "fit", fit)
    monkeypatch.setattr(demo, "compare_runs", compare_runs)
    return calls


def test_the_defaults_are_the_numbers_the_readme_and_docstring_quote() -> None:
    quoted = DemoSettings(
        image_size=128, n_images=600, epochs=4, batch_size=32, lr=1e-3, eval_images=16,
        val_images=8, stability_images=1, stability_fractions=(0.1, 0.3, 0.5), rise_masks=200,
        sise_mu=0.3, seed=0, arch="resnet18", data="lesions", select_metric="cross_entropy",
        sanity=True, sanity_images=2, grid_pg=True, grid_pg_grids=4,
        check_methods=CHECK_METHODS, perturbation=False, bcos=False,
        bcos_arch="cifar10_resnet20",
    )  # fmt: skip
    assert DemoSettings() == quoted


@pytest.mark.parametrize(
    ("scale", "n_images", "eval_images", "val_images", "stability", "rise", "sanity", "grids"),
    [
        (0.01, 60, 8, 8, 1, 50, 2, 2),  # every floor
        (0.5, 300, 8, 8, 1, 100, 2, 2),
        (0.75, 450, 12, 8, 1, 150, 2, 3),
        (2.0, 1200, 32, 16, 1, 200, 2, 4),  # the per-image sizes stay at scale 1's
        (100.0, 60000, 1600, 800, 1, 200, 2, 4),
    ],
)
def test_scale_grows_the_data_and_evaluation_with_their_floors(
    scale: float, n_images: int, eval_images: int, val_images: int, stability: int,
    rise: int, sanity: int, grids: int,
) -> None:  # fmt: skip
    scaled = DemoSettings().scaled(scale)
    assert (
        scaled.n_images, scaled.eval_images, scaled.val_images, scaled.stability_images,
        scaled.rise_masks, scaled.sanity_images, scaled.grid_pg_grids,
    ) == (n_images, eval_images, val_images, stability, rise, sanity, grids)  # fmt: skip
    assert dataclasses.replace(
        scaled, n_images=600, eval_images=16, val_images=8, stability_images=1,
        rise_masks=200, sanity_images=2, grid_pg_grids=4,
    ) == DemoSettings()  # nothing else changes  # fmt: skip


@pytest.mark.parametrize("installed", [True, False])
def test_the_bcos_run_joins_only_when_asked_and_installed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, installed: bool
) -> None:
    monkeypatch.setattr(demo, "bcos_available", lambda: installed)
    with caplog.at_level(logging.WARNING, logger="torchlap.demo"):
        assert suite_runs("peers", TINY) == SUITES["peers"]  # not asked: no word either
        assert caplog.records == []
        runs = suite_runs("main", dataclasses.replace(TINY, bcos=True))
    names = [name for name, _ in runs]
    if installed:
        assert names == ["vanilla", "ws-lap", "bb-lap", "bcos"] and caplog.records == []
    else:
        assert names == ["vanilla", "ws-lap", "bb-lap"]
        (record,) = caplog.records
        assert record.getMessage().startswith(
            "B-cos run skipped: the bcos package is not installed (pip install 'torchlap[bcos]'"
        )


def _trained(recorded: dict[str, list]) -> dict[str, Any]:
    return {Path(config.out).name: config for config in recorded["fit"]}


@pytest.mark.parametrize(("arch", "lap"), [("resnet18", "resnet18"), ("smallcnn", "auto")])
def test_each_run_trains_with_the_settings_and_its_own_model(
    tmp_path: Path, recorded: dict, monkeypatch: pytest.MonkeyPatch, arch: str, lap: str
) -> None:
    monkeypatch.setattr(demo, "bcos_available", lambda: True)
    settings = dataclasses.replace(TINY, arch=arch, bcos=True, seed=3, lr=0.01, batch_size=8)
    run_demo(tmp_path, settings, suite="peers")
    configs = _trained(recorded)
    assert list(configs) == [name for name, _ in SUITES["peers"]] + ["bcos"]
    for name, config in configs.items():
        assert config.out == str(tmp_path / "runs" / name)
        assert (config.data, config.epochs, config.lr, config.image_size, config.batch_size,
                config.n_images, config.seed, config.select_metric, config.overwrite) == (
            "lesions", 1, 0.01, 32, 8, 60, 3, "cross_entropy", False,
        )  # fmt: skip
        vanilla = str(tmp_path / "runs" / "vanilla")  # BLA-PH explains the trained vanilla run
        assert config.pretrained == (vanilla if name == "bla-ph" else None)
    expected = {  # name: (model, arch, lap, supervision)
        "vanilla": ("lap", arch, "none", "none"),
        "ws-lap": ("lap", arch, lap, "weak"),
        "bb-lap": ("lap", arch, lap, "expert"),
        "bla": ("bla", arch, "none", "none"),
        "bla-ph": ("bla-ph", arch, "none", "none"),
        "antehoc": ("antehoc", arch, "none", "none"),
        "bcos": ("bcos", "cifar10_resnet20", "none", "none"),
    }
    for name, fields in expected.items():
        config = configs[name]
        assert (config.model, config.arch, config.lap, config.supervision) == fields, name
    assert recorded["compare"][0][3].methods == CHECK_METHODS and "bcos" in CHECK_METHODS


def test_without_settings_the_demo_runs_its_defaults(tmp_path: Path, recorded: dict) -> None:
    run_demo(tmp_path)
    (config, *_) = recorded["fit"]
    assert (config.arch, config.image_size, config.n_images, config.epochs) == (
        "resnet18", 128, 600, 4,
    )  # fmt: skip
    assert recorded["compare"][0][3].max_images == 16


def test_the_comparison_gets_every_run_and_the_settings_sizes(
    tmp_path: Path, recorded: dict
) -> None:
    settings = dataclasses.replace(TINY, sanity=True, grid_pg=True, sise_mu=0.5, seed=2)
    assert run_demo(tmp_path, settings, overwrite=True) == tmp_path / "report.html"
    ((run_dirs, data, out, options, force),) = recorded["compare"]
    assert run_dirs == [tmp_path / "runs" / name for name in ("vanilla", "ws-lap", "bb-lap")]
    assert (data, out, force) == ("lesions", tmp_path, True)
    assert options.methods == CHECK_METHODS == options.check_methods
    assert (options.max_images, options.max_val_images, options.stability_images) == (8, 8, 4)
    assert options.stability_fractions == (0.1, 0.3, 0.5) and options.seed == 2
    assert options.method_options == {"rise": {"n_masks": 50}, "sise": {"mu": 0.5}}
    assert (options.sanity, options.sanity_images, options.grid_pg, options.grid_pg_grids) == (
        True, 2, True, 4,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("perturbation", "methods", "evaluated"),
    [
        (True, None, (*CHECK_METHODS, "scorecam", "rise", "sise")),
        (True, ("lap", "gradcam"), ("lap", "gradcam")),  # the methods asked for, no more
        (False, ("gradcam",), ("gradcam",)),
    ],
)
def test_perturbation_adds_the_other_comparison_methods_unless_methods_are_given(
    tmp_path: Path, recorded: dict, perturbation: bool, methods: Any, evaluated: tuple
) -> None:
    assert set(DEFAULT_METHODS) - set(CHECK_METHODS) == {"scorecam", "rise", "sise"}
    settings = dataclasses.replace(TINY, perturbation=perturbation)
    run_demo(tmp_path, settings, methods=methods)
    assert recorded["compare"][0][3].methods == evaluated


def _finished_runs(out: Path, settings: DemoSettings, weights: bool = True) -> None:
    """Stand-ins for the main suite's runs as torchlap train leaves them: its config.json with
    the demo's options, and (finished) the weights (no digest record: they are not checked)."""
    for name, options in SUITES["main"]:
        run = out / "runs" / name
        run.mkdir(parents=True)
        if weights:
            (run / "model.safetensors").write_bytes(b"weights")
        config = demo._train_config(name, options, settings, out, False)
        record = {"format": "torchlap-run", "train": config.to_dict()}
        (run / "config.json").write_text(json.dumps(record))


def test_finished_runs_are_reused_and_said_so_and_overwrite_trains_them_again(
    tmp_path: Path, recorded: dict, caplog: pytest.LogCaptureFixture
) -> None:
    _finished_runs(tmp_path, TINY)
    with caplog.at_level(logging.INFO, logger="torchlap.demo"):
        run_demo(tmp_path, TINY)
    assert recorded["fit"] == []
    assert [r.getMessage() for r in caplog.records] == [
        f"{name}: reusing the finished run in {tmp_path / 'runs' / name}"
        for name in ("vanilla", "ws-lap", "bb-lap")
    ]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="torchlap.demo"):
        run_demo(tmp_path, TINY, overwrite=True)
    assert list(_trained(recorded)) == ["vanilla", "ws-lap", "bb-lap"]
    assert all(config.overwrite for config in recorded["fit"])
    assert [r.getMessage() for r in caplog.records] == [
        f"{name}: trained in 0 s" for name in ("vanilla", "ws-lap", "bb-lap")
    ]


def test_a_run_that_never_finished_is_trained_not_reused(tmp_path: Path, recorded: dict) -> None:
    """torchlap's config.json without weights: a run stopped before its first epoch."""
    _finished_runs(tmp_path, TINY, weights=False)
    run_demo(tmp_path, TINY)
    assert list(_trained(recorded)) == ["vanilla", "ws-lap", "bb-lap"]


def test_the_folders_are_checked_before_anything_is_replaced_or_trained(
    tmp_path: Path, recorded: dict, caplog: pytest.LogCaptureFixture
) -> None:
    """With --overwrite and a folder refused (bb-lap holds a user's file): the finished runs
    before it keep their files, the user's report.html stays and no replacement is said."""
    from torchlap.runs import RunFolderError

    _finished_runs(tmp_path, TINY)
    (tmp_path / "report.html").write_text("mine")
    blocked = tmp_path / "runs" / "bb-lap"
    for entry in blocked.iterdir():
        entry.unlink()
    (blocked / "notes.txt").write_text("mine")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    checked: list[str] = []
    with caplog.at_level(logging.INFO), pytest.raises(RunFolderError, match=r"runs/bb-lap is"):
        run_demo(tmp_path, TINY, overwrite=True, on_checked=lambda: checked.append("checked"))
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert checked == [] and recorded["fit"] == []
    assert not [r for r in caplog.records if "replacing" in r.getMessage()]
    (blocked / "notes.txt").unlink()  # the way clear: the replacement is said, then it trains
    order = recorded["order"]
    with caplog.at_level(logging.INFO):
        run_demo(tmp_path, TINY, overwrite=True, on_checked=lambda: order.append("checked"))
    assert [r.getMessage() for r in caplog.records if "replacing" in r.getMessage()] == [
        f"--overwrite: replacing {tmp_path / 'report.html'}"
    ]
    assert recorded["order"] == ["checked", "fit vanilla", "fit ws-lap", "fit bb-lap"]
