"""``benchmarks/resolution_study.py``: its table from finished cells, and the commands it runs."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def study():
    sys.path.insert(0, str(BENCHMARKS))  # the script imports its sibling _steps
    try:
        spec = importlib.util.spec_from_file_location(
            "resolution_study", BENCHMARKS / "resolution_study.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCHMARKS))


def _metric(value):
    return {"value": value}


def _write_cell(out: Path) -> None:
    cell = out / "lesions" / "128px" / "demo"
    runs = {
        "ws-lap": {
            "model": {"balanced_accuracy": _metric(0.5)},  # 16 images: not the table's BA
            "protocol": {"metrics_revision": 8},
            "localization": {
                "lap": {
                    "iou_threshold": _metric(0.20),
                    "iou_topk": {"value": 0.31, "n": 8, "n_excluded": 8},
                },
                "guided_backprop": {"iou_threshold": _metric(0.35), "iou_topk": _metric(0.30)},
                "rise": {"iou_threshold": _metric(0.10), "iou_topk": _metric(0.33)},
                "gradcam": {"iou_threshold": _metric(None), "iou_topk": _metric(0.05)},
            },
            "faithfulness": {
                "lap": {
                    "drop": {"value": 30.0, "n": 16, "n_excluded": 0},
                    "increase": _metric(12.5),
                },
                "rise": {"drop": _metric(20.0), "increase": _metric(25.0)},
                "gradcam": {"drop": _metric(40.0), "increase": _metric(31.25)},
            },
            # the lead over the best method of each binarization (GBP by thresholding with its
            # interval; RISE by top-K without one); the other entries must not be read
            "paired": {
                "references": {
                    "lap": {
                        "faithfulness/drop": {
                            "rise": {"difference": 10.0, "interval": [2.5, 17.25]},
                            "gradcam": {"difference": -10.0, "interval": [-20.0, -1.0]},
                        },
                        "iou_threshold": {
                            "guided_backprop": {"difference": -0.15, "interval": [-0.2, -0.1]},
                            "rise": {"difference": 0.1, "interval": [0.0, 0.2]},
                        },
                        "iou_topk": {"rise": {"difference": -0.02, "interval": None}},
                    }
                }
            },
        },
        "bb-lap": {
            "model": {"balanced_accuracy": _metric(1.0)},
            "localization": {"lap": {"iou_threshold": _metric(0.4), "iou_topk": _metric(None)}},
        },
    }
    (cell / "compare").mkdir(parents=True)
    comparison = {"format": "torchlap-comparison", "runs": runs}
    (cell / "compare" / "comparison.json").write_text(json.dumps(comparison))
    for name, selected, test in (
        ("ws-lap", {"global_epoch": 3, "of_epochs": 4}, {"balanced_accuracy": 0.9}),
        ("bb-lap", {}, {"balanced_accuracy": 1.0}),
    ):
        (cell / "runs" / name).mkdir(parents=True)
        record = {"selected_epoch": selected, "test": test}
        (cell / "runs" / name / "metrics.json").write_text(json.dumps(record))
    (cell / "runs" / "vanilla").mkdir(parents=True)
    (cell / "runs" / "vanilla" / "metrics.json").write_text(
        json.dumps({"test": {"balanced_accuracy": 0.855}})
    )
    steps = {
        "lesions/128/demo/train/vanilla": {"seconds": 60.0},
        "lesions/128/demo/compare": {"seconds": 120.0, "finished": "2026-12-05 07:10"},
        "lesions/64/demo/compare": {"seconds": 6000.0},  # another cell: not counted
    }
    (out / "study.json").write_text(json.dumps({"steps": steps}))


def test_table_rows_compare_lap_with_the_best_post_hoc_method(study, tmp_path: Path) -> None:
    _write_cell(tmp_path)
    lines = study.table(tmp_path).splitlines()
    assert len(lines) == 4  # header, rule, ws-lap, bb-lap
    ws = [cell.strip() for cell in lines[2].strip("|").split("|")]
    # no recorded arguments: the recipe's image count (lesions: 1000)
    assert ws[:8] == ["lesions", "128px", "1000", "demo", "ws-lap", "3/4", "90.0", "85.5"]
    # thresholding: Guided Backprop best (0.35 > RISE 0.10; Grad-CAM undefined is left out);
    # top-K: RISE best (0.33 > 0.30 > 0.05)
    assert ws[8:12] == ["20.0", "35.0 (guided_backprop)", "31.0", "33.0 (rise)"]
    assert ws[12:14] == ["-15.0 [-20.0, -10.0]", "-2.0"]  # IoU points, from "paired"
    assert ws[14] == "8 of 16"  # the images LAP's IoU rests on: those with a box
    assert ws[15] == "3"  # 180 s of this cell's steps, in minutes
    assert ws[16] == "2026-12-05 (8)"  # the comparison's date and metrics revision
    bb = [cell.strip() for cell in lines[3].strip("|").split("|")]
    assert bb[5:15] == ["-", "100.0", "85.5", "40.0", "n/a", "n/a", "n/a", "-", "-", "-"]
    assert bb[16] == "2026-12-05 (?)"  # no protocol recorded: the revision is unknown


def test_faithfulness_table_compares_lap_with_the_lowest_drop(study, tmp_path: Path) -> None:
    """Drop% (lower is better) against the post-hoc method with the lowest Drop%, Increase%
    against the highest Increase%; percentages already, so leads are not scaled."""
    _write_cell(tmp_path)
    lines = study.faithfulness_table(tmp_path).splitlines()
    assert len(lines) == 4
    ws = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert ws == ["lesions", "128px", "demo", "ws-lap", "30.0", "20.0 (rise)",
                  "+10.0 [+2.5, +17.2]", "12.5", "31.2 (gradcam)", "-", "16"]  # fmt: skip
    bb = [cell.strip() for cell in lines[3].strip("|").split("|")]
    assert bb[4:] == ["n/a", "n/a", "-", "n/a", "n/a", "-", "-"]


def test_table_reads_the_image_count_a_cell_trained_with(study, tmp_path: Path) -> None:
    _write_cell(tmp_path)
    state = json.loads((tmp_path / "study.json").read_text())
    state["steps"]["lesions/128/demo/train/vanilla"]["arguments"] = [
        "train", "--data", "lesions", "--n-images", "500", "--epochs", "4",
    ]  # fmt: skip
    (tmp_path / "study.json").write_text(json.dumps(state))
    row = study.table(tmp_path).splitlines()[2]
    assert [cell.strip() for cell in row.strip("|").split("|")][:3] == ["lesions", "128px", "500"]


def test_a_step_records_its_arguments_and_is_not_rerun(study, tmp_path: Path) -> None:
    steps = importlib.import_module("_steps")
    done = tmp_path / "done.txt"
    script = f"import pathlib; pathlib.Path({str(done)!r}).write_text('x')"
    command = [sys.executable, "-c", script, "--n-images", "7"]
    state = steps.load_state(tmp_path)
    steps.run_step(tmp_path, state, "a/step", command, done)
    entry = json.loads((tmp_path / "study.json").read_text())["steps"]["a/step"]
    assert entry["arguments"] == ["--n-images", "7"]  # what follows python -m torchlap.cli
    done.write_text("kept")
    steps.run_step(tmp_path, state, "a/step", command, done)  # done exists: not rerun
    assert done.read_text() == "kept"


def test_a_cell_trains_three_runs_and_explains_the_two_lap_runs(
    study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = []

    def fake_step(out, state, key, command, done):
        commands.append((key, command))

    monkeypatch.setattr(study, "run_step", fake_step)
    study.main(["--out", str(tmp_path), "--data", "lesions", "--sizes", "64", "--lengths", "long"])
    keys = [key for key, _ in commands]
    assert keys == [
        "lesions/64/long/train/vanilla",
        "lesions/64/long/train/ws-lap",
        "lesions/64/long/train/bb-lap",
        "lesions/64/long/compare",
    ]
    train = commands[0][1]
    assert train[train.index("--epochs") + 1] == "12"
    assert train[train.index("--keep-epoch") + 1] == "best"
    assert train[train.index("--select-metric") + 1] == "cross_entropy"
    compare = commands[-1][1]
    runs = compare[compare.index("compare") + 1 : compare.index("--data")]
    assert [Path(run).name for run in runs] == ["ws-lap", "bb-lap"]
    options = json.loads(compare[compare.index("--method-options") + 1])
    assert options == {"rise": {"n_masks": 500}, "sise": {"mu": 0.3}}


def test_devices_reach_the_comparison_only(
    study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["--out", str(tmp_path), "--data", "lesions", "--sizes", "64", "--lengths", "demo"]
    commands = dict(_commands(study, monkeypatch, [*argv, "--devices", "2"]))
    assert _value(commands["lesions/64/demo/compare"], "--devices") == "2"
    # sharding splits whole batches: 64 images (the default) in batches of 32, one per process
    assert _value(commands["lesions/64/demo/compare"], "--max-images") == "64"
    assert _value(commands["lesions/64/demo/compare"], "--batch-size") == "32"
    commands = dict(_commands(study, monkeypatch, [*argv, "--devices", "2", "--eval-images", "16"]))
    assert _value(commands["lesions/64/demo/compare"], "--batch-size") == "8"
    assert "--devices" not in commands["lesions/64/demo/train/bb-lap"]
    commands = dict(_commands(study, monkeypatch, argv))
    assert "--devices" not in commands["lesions/64/demo/compare"]  # one process by default
    with pytest.raises(SystemExit):
        study.main([*argv, "--devices", "0"])


def test_unknown_length_is_refused(study, tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        study.main(["--out", str(tmp_path), "--lengths", "short"])


def _commands(study, monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> list:
    commands = []
    monkeypatch.setattr(
        study, "run_step", lambda out, state, key, command, done: commands.append((key, command))
    )
    study.main(argv)
    return commands


def _value(command: list[str], option: str) -> str:
    return command[command.index(option) + 1]


def test_digits_trains_its_recipe_at_both_lengths(
    study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["--out", str(tmp_path), "--data", "digits", "--sizes", "128"]
    commands = _commands(study, monkeypatch, argv)
    trains = {key: command for key, command in commands if "/train/" in key}
    demo, long = trains["digits/128/demo/train/bb-lap"], trains["digits/128/long/train/bb-lap"]
    # the small CNN schedule under which digits is learnt, the automatic LAP layout
    assert [_value(demo, o) for o in ("--arch", "--n-images", "--lr", "--lap")] == [
        "smallcnn",
        "4000",
        "0.003",
        "auto",
    ]
    assert (_value(demo, "--epochs"), _value(long, "--epochs")) == ("15", "45")
    assert _value(trains["digits/128/demo/train/vanilla"], "--lap") == "none"
    assert demo.count("--epochs") == 1 and demo.count("--n-images") == 1


def test_command_line_overrides_the_recipe(
    study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["--out", str(tmp_path), "--data", "lesions", "--sizes", "224", "--lengths", "demo",
            "--n-images", "400", "--demo-epochs", "6"]  # fmt: skip
    train = _commands(study, monkeypatch, argv)[0][1]
    assert (_value(train, "--n-images"), _value(train, "--epochs")) == ("400", "6")
    assert (_value(train, "--arch"), _value(train, "--image-size")) == ("resnet18", "224")


@pytest.mark.parametrize(
    "argv",
    [
        ["--data", "mnist"],
        ["--sizes", "64,big"],
        ["--sizes", "16"],
        ["--n-images", "0"],
        ["--eval-images", "0"],
        ["--rise-masks", "-5"],
        ["--sise-mu", "1.5"],
    ],
)
def test_bad_study_options_are_refused(study, tmp_path: Path, argv: list[str], capsys) -> None:
    out = tmp_path / "study"
    with pytest.raises(SystemExit):
        study.main(["--out", str(out), *argv])
    assert "error" in capsys.readouterr().err
    assert not out.exists()  # refused before any work


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("compare/comparison.json", "{", r"comparison\.json cannot be read \(Expecting"),
        ("compare/comparison.json", "[]", r"comparison\.json holds a list; expected a JSON"),
        ("compare/comparison.json", '{"runs": {}}', r"comparison\.json has the format None"),
        (
            "compare/comparison.json",
            '{"format": "torchlap-comparison", "runs": []}',
            r"comparison\.json: 'runs' is \[\]; expected .*\"runs\": \{\.\.\.\}",
        ),
        ("runs/ws-lap/metrics.json", '{"test": NaN}', r"metrics\.json cannot be read \(NaN is"),
        ("runs/ws-lap/metrics.json", '{"test": [0.9]}', r"metrics\.json: 'test' is \[0\.9\]"),
        (
            "runs/ws-lap/metrics.json",
            '{"selected_epoch": "3"}',
            r"metrics\.json: 'selected_epoch' is '3'; expected .* or null",
        ),
    ],
    ids=["not JSON", "a list", "no format", "runs a list", "NaN", "test a list", "epoch text"],
)
def test_a_damaged_output_of_a_step_is_named(
    study, tmp_path: Path, file: str, content: str, message: str
) -> None:
    """The table read the steps' files raw: a JSONDecodeError, KeyError or AttributeError
    traceback, or (a NaN) a silent 'nan' in the table."""
    _write_cell(tmp_path)
    path = tmp_path / "lesions" / "128px" / "demo" / file
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as caught:
        study.table(tmp_path)
    assert str(path) in str(caught.value)
