"""TrainConfig's bool fields, the supervision settings a run does not use, balanced batches as
an option: each refused or recorded before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_configs import tiny_config
from typer.testing import CliRunner

from torchlap.cli import app
from torchlap.runs import RUN_FORMAT
from torchlap.train import TrainConfig, fit


def _config(**kw) -> TrainConfig:
    return TrainConfig(data="lesions", out="runs/x", **kw)


# ------------------------------------------------------------------ bool fields (strings refused)
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"overwrite": "no"}, r"overwrite must be True or False, got 'no'"),
        ({"use_discriminative": "no"}, r"use_discriminative must be True or False, got 'no'"),
        ({"resume": 1}, r"resume must be True or False, got 1"),
        ({"shuffle_labels": "yes"}, r"shuffle_labels must be True or False, got 'yes'"),
        ({"progress_bar": "x"}, r"progress_bar \(or None: auto\) must be True or False, got 'x'"),
        ({"balanced_batches": "yes"}, r"balanced_batches or 'auto' must be True or False"),
        ({"balanced_batches": 1}, r"balanced_batches or 'auto' must be True or False, got 1"),
    ],
)
def test_a_bool_field_refuses_anything_but_a_bool(changes: dict, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        _config(**changes).validate()


def test_bool_fields_accept_bools_none_and_auto() -> None:
    _config(progress_bar=None, balanced_batches="auto").validate()
    config = _config(overwrite=True, progress_bar=False, balanced_batches=False)
    config.validate()
    assert config.overwrite is True and config.balanced_batches is False
    json.dumps(config.to_dict())


def test_overwrite_as_a_string_does_not_replace_the_run(tmp_path: Path) -> None:
    """``overwrite="no"`` is truthy: it used to replace the run in the folder."""
    out = tmp_path / "run"
    out.mkdir()
    record = {"format": RUN_FORMAT, "train": tiny_config(out, seed=1).to_dict()}
    (out / "config.json").write_text(json.dumps(record))
    (out / "metrics.json").write_text("{}")
    with pytest.raises(TypeError, match="overwrite must be True or False, got 'no'"):
        fit(tiny_config(out, seed=2, overwrite="no"))
    assert json.loads((out / "config.json").read_text()) == record


# ------------------------------------------------------------- supervision settings not used
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"supervision": "none", "min_ar": 0.3, "use_discriminative": False},
            r"--supervision none does not use these settings: --min-ar \(min_ar=0.3\) needs "
            r"--supervision weak or expert; --no-discriminative \(use_discriminative=False\) "
            r"needs --supervision weak or expert",
        ),
        ({"supervision": "none", "iar": 0.2}, r"--iar \(iar=0.2\) needs --supervision weak"),
        ({"supervision": "none", "ratios": {"0": [0.1, 0.5, 0.1]}}, r"--ratios .* needs"),
        (
            {"expert_positive_fraction": 1.0},
            r"--supervision weak does not use .*expert_positive_fraction=1.0\) needs "
            r"--supervision expert",
        ),
        ({"loss_weights": {"expert": 1.0}}, r"--loss-weight expert needs --supervision expert"),
        (
            {"supervision": "none", "loss_weights": {"discrimination": 0.5}},
            r"--loss-weight discrimination needs --supervision weak or expert",
        ),
        (
            {"use_discriminative": False, "loss_weights": {"discriminative": 0.5}},
            r"--loss-weight discriminative needs the scorers \(no --no-discriminative\)",
        ),
        (
            {"supervision": "expert", "concordance_threshold": 0.2},
            r"concordance_threshold needs a concordance weight > 0 \(--concordance-weight\)",
        ),
        (
            {"supervision": "none", "concordance_mode": "both"},
            r"concordance_mode needs a concordance weight > 0",
        ),
    ],
)
def test_supervision_settings_the_supervision_does_not_use_are_refused(
    changes: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _config(**changes).validate()


def test_supervision_settings_the_supervision_uses_are_accepted() -> None:
    _config(supervision="weak", min_ar=0.2, use_discriminative=False).validate()
    _config(supervision="expert", min_ar=0.2, expert_positive_fraction=1.0).validate()
    _config(supervision="expert", concordance_weight=0.25, concordance_threshold=0.2).validate()
    _config(supervision="none", concordance_weight=0.25, concordance_mode="both").validate()
    _config(supervision="none", loss_weights={"concordance": 0.5, "discrimination": 0}).validate()
    _config(supervision="weak", concordance_threshold=0.2).validate()  # weak: 0.25 per pair


def test_conflicting_supervision_flags_fail_before_the_run_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--data", "lesions", "--out", str(out), "--supervision", "none"]
    result = CliRunner().invoke(app, [*args, "--min-ar", "0.3", "--no-discriminative"])
    assert result.exit_code == 2, result.output
    assert "--min-ar (min_ar=0.3) needs --supervision weak or expert" in result.output
    assert not out.exists()


# ------------------------------------------------------------------------ balanced batches
def test_balanced_batches_by_default_for_every_run_as_paper_000_trains_its_models() -> None:
    assert TrainConfig(data="lesions", out="x").balanced_batches is True
    assert _config().uses_balanced_batches  # weak LAP
    assert _config(supervision="expert").uses_balanced_batches
    assert _config(supervision="none").uses_balanced_batches
    assert _config(lap="none", supervision="none").uses_balanced_batches  # vanilla too
    assert _config(model="bla", lap="none").uses_balanced_batches  # and the peers
    assert not _config(balanced_batches=False).uses_balanced_batches
    assert not _config(lap="none", supervision="none", balanced_batches=False).uses_balanced_batches


def test_balanced_batches_auto_follows_the_supervision_of_the_lap_heads() -> None:
    # "auto": the default before 2026-12-07, which older runs' config.json records
    auto = {"balanced_batches": "auto"}
    assert _config(**auto).uses_balanced_batches  # weak LAP
    assert _config(supervision="expert", **auto).uses_balanced_batches
    assert not _config(supervision="none", **auto).uses_balanced_batches
    assert not _config(lap="none", supervision="none", **auto).uses_balanced_batches
    assert not _config(model="bla", lap="none", **auto).uses_balanced_batches


def test_balanced_batches_identify_a_run_by_what_they_resolve_to() -> None:
    assert _config(balanced_batches="auto").identity() == _config(balanced_batches=True).identity()
    assert _config(balanced_batches="auto").identity() != _config(balanced_batches=False).identity()
    vanilla = {"lap": "none", "supervision": "none"}
    assert (
        _config(**vanilla, balanced_batches="auto").identity()
        == _config(**vanilla, balanced_batches=False).identity()
    )  # an older vanilla run's "auto" meant random batches, and still does
    assert _config(**vanilla).identity() != _config(**vanilla, balanced_batches="auto").identity()
    # a config.json written before the option: random batches, so a resume keeps them
    data = _config().to_dict()
    del data["balanced_batches"]
    older = TrainConfig.from_dict(data)
    assert older.balanced_batches is False and not older.uses_balanced_batches


def built_configs(monkeypatch: pytest.MonkeyPatch) -> list[TrainConfig]:
    """The list each ``torchlap train`` invocation appends its built config to (and stops)."""
    seen: list[TrainConfig] = []

    def fake_fit(config: TrainConfig) -> Path:
        seen.append(config)
        raise RuntimeError("stop")

    monkeypatch.setattr("torchlap.train.run.fit", fake_fit)
    return seen


@pytest.mark.parametrize(
    ("flag", "expected"),
    [([], True), (["--balanced-batches"], True), (["--no-balanced-batches"], False)],
)
def test_the_cli_flags_set_balanced_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: list[str], expected: object
) -> None:
    seen = built_configs(monkeypatch)
    args = ["train", "--data", "lesions", "--out", str(tmp_path / "run"), *flag]
    CliRunner().invoke(app, args)
    assert [config.balanced_batches for config in seen] == [expected]


# ------------------------------------------------------- --schedule, --weight-decay, --momentum
def test_schedule_weight_decay_and_momentum_reach_every_phase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = built_configs(monkeypatch)
    args = ["train", "--data", "lesions", "--out", str(tmp_path / "run"), "--phase", "lap:2:1e-4",
            "--phase", "layer4,fc:3:1e-3:sgd", "--schedule", "constant", "--weight-decay", "0",
            "--momentum", "0.5"]  # fmt: skip
    CliRunner().invoke(app, args)
    (config,) = seen
    assert [(p.train, p.lr, p.optimizer) for p in config.phases] == [
        ("lap", 1e-4, "adam"), ("layer4,fc", 1e-3, "sgd")
    ]  # fmt: skip
    for phase in config.phases:
        assert (phase.schedule, phase.weight_decay, phase.momentum) == ("constant", 0.0, 0.5)
    CliRunner().invoke(app, args[:-6])  # without the flags: the defaults, as before
    assert [(p.schedule, p.weight_decay, p.momentum) for p in seen[-1].phases] == [
        ("cosine", 1e-6, 0.9), ("cosine", 1e-6, 0.9)
    ]  # fmt: skip


def test_lr_and_optimizer_fill_the_fields_a_phase_leaves_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # before, a phase without OPTIMIZER trained with adam and one without LR at 1e-3, whatever
    # --optimizer and --lr said (and config.json recorded the flags)
    seen = built_configs(monkeypatch)
    args = ["train", "--data", "lesions", "--out", str(tmp_path / "run"), "--phase", "lap:2",
            "--phase", "fc:1:1e-2", "--phase", "all:1:1e-4:adamw", "--optimizer", "sgd",
            "--lr", "0.05", "--momentum", "0.5"]  # fmt: skip
    CliRunner().invoke(app, args)
    assert [(p.lr, p.optimizer, p.momentum) for p in seen[-1].phases] == [
        (0.05, "sgd", 0.5), (1e-2, "sgd", 0.5), (1e-4, "adamw", 0.5)
    ]  # fmt: skip


def test_the_momentum_flag_refuses_values_outside_0_1(tmp_path: Path) -> None:
    args = ["train", "--data", "lesions", "--out", str(tmp_path / "r"), "--optimizer", "sgd"]
    result = CliRunner().invoke(app, [*args, "--momentum", "1"])
    assert result.exit_code == 2 and "momentum must be a number in [0, 1)" in result.output
    result = CliRunner().invoke(app, [*args[:-2], "--momentum", "0.5"])
    assert result.exit_code == 2 and "is SGD's, but no phase uses sgd" in result.output
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------ freeze_features (paper 002 F)
def test_freeze_features_reaches_the_config_from_the_flag(tmp_path: Path, monkeypatch) -> None:
    seen = built_configs(monkeypatch)
    for text, value in (("auto", "auto"), ("true", True), ("FALSE", False)):
        args = ["train", "--data", "lesions", "--model", "bla", "--lap", "none", "--out",
                str(tmp_path / text), "--freeze-features", text]  # fmt: skip
        CliRunner().invoke(app, args)
        assert seen[-1].freeze_features == value
    assert _config().freeze_features == "auto"  # the default, for every model


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"freeze_features": "yes"}, TypeError, r"freeze_features must be 'auto', True or False"),
        ({"freeze_features": True}, ValueError, r"freeze_features=True is not for --model lap"),
        ({"model": "bla-ph", "lap": "none", "pretrained": "w.safetensors",
          "freeze_features": False}, ValueError, r"freeze_features=False is not for --model bla"),
    ],
)  # fmt: skip
def test_freeze_features_that_does_not_apply_is_refused(changes, error, message) -> None:
    with pytest.raises(error, match=message):
        _config(**changes).validate()
    assert _config(model="bla", lap="none", freeze_features=False).validate() is None


def test_the_flag_refuses_other_words(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--data", "lesions", "--model", "bla", "--lap",
                                      "none", "--out", str(tmp_path / "r"), "--freeze-features",
                                      "maybe"])  # fmt: skip
    assert result.exit_code != 0 and "takes auto, true or false, got 'maybe'" in result.output
    assert not (tmp_path / "r").exists()


def test_an_older_bla_run_resumes_with_its_feature_extractor_trained(tmp_path: Path) -> None:
    """A BLA run from before --freeze-features trained F also with --pretrained; read back as
    "auto" it compared equal to a new "auto" run, which now holds F fixed: the resume rebuilt
    another optimizer and failed inside Lightning. It reads back as False, and resuming it
    with the new default is refused with the flag to add."""
    from torchlap.train.folder import RunFolderError, _check_resume

    kwargs = {"model": "bla", "lap": "none", "pretrained": "w.safetensors"}
    recorded = _config(**kwargs).to_dict()
    del recorded["freeze_features"]  # an older run
    back = TrainConfig.from_dict(recorded)
    assert back.freeze_features is False and back.identity()["freeze_features"] is False
    assert _config(**kwargs).identity()["freeze_features"] is True  # "auto" with --pretrained
    run = tmp_path / "bla"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"format": RUN_FORMAT, "train": recorded}))
    with pytest.raises(RunFolderError, match=r"trained: add --freeze-features false"):
        _check_resume(run, _config(**kwargs, resume=True), apply=False)
    for model in ("lap", "bla-ph"):  # no BLA F to train (LAP) or always fixed (BLA-PH)
        old = _config(model=model, lap="auto" if model == "lap" else "none").to_dict()
        del old["freeze_features"]
        assert TrainConfig.from_dict(old).freeze_features == "auto"
