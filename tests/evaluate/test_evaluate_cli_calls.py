"""What ``torchlap evaluate`` and ``compare`` hand to the evaluation (the evaluation stubbed):
the library's option defaults, the output folders, the printed paths, the log, and the output
guards (a user's files refused before the evaluation starts, left in place when it refuses)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

import torchlap.evaluate.cli as evaluate_cli
from torchlap.cli import app
from torchlap.evaluate import EvaluateOptions
from torchlap.evaluate.shard import ShardPlan


class _RefusedError(ValueError):
    pass


@pytest.fixture
def seen(monkeypatch) -> list[dict]:
    """The calls of ``evaluate_run``/``compare_runs``, stubbed: each marks its checks passed,
    makes its folder and logs one line (``refuse``: raise before the checks pass instead)."""
    calls: list[dict] = []

    def evaluate_run(run_dir, data, out, options, force, *, lime_baseline, on_checked):
        calls.append(dict(run=run_dir, data=data, out=out, options=options, force=force,
                          lime_baseline=lime_baseline))  # fmt: skip
        log = logging.getLogger("torchlap.evaluate")
        log.warning("the stub checks %s", run_dir)  # kept until the checks pass
        if calls[0].get("refuse"):
            raise _RefusedError("refused by the evaluation")
        if on_checked is not None:  # (None on a rank other than 0)
            on_checked()
        log.warning("the stub passed its checks")  # (the folder is not made yet)
        Path(out).mkdir(parents=True, exist_ok=True)
        log.warning("the stub evaluated %s", run_dir)
        return {"evaluated": True}

    def compare_runs(runs, data, out, options, *, force, on_checked):
        calls.append(dict(runs=runs, data=data, out=out, options=options, force=force))
        logging.getLogger("torchlap.evaluate").warning("the stub checks %d runs", len(runs))
        if calls[0].get("refuse"):
            raise _RefusedError("refused by the evaluation")
        on_checked()
        Path(out).mkdir(parents=True, exist_ok=True)
        logging.getLogger("torchlap.evaluate").warning("the stub compared %d runs", len(runs))
        return Path(out) / "report.html"

    monkeypatch.setattr(evaluate_cli, "evaluate_run", evaluate_run)
    monkeypatch.setattr(evaluate_cli, "compare_runs", compare_runs)
    return calls


_RANKS = ("RANK", "NODE_RANK", "LOCAL_RANK", "SLURM_PROCID", "PMI_RANK", "OMPI_COMM_WORLD_RANK")


@pytest.fixture
def launches(monkeypatch) -> list[ShardPlan]:
    """The plans of the launches (``launch_sharded`` stubbed: it runs this process's share and
    returns None, as it does on a rank other than 0)."""
    for name in (*_RANKS, "WORLD_SIZE", "MASTER_ADDR", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    plans: list[ShardPlan] = []

    def launch_sharded(plan, work):
        plans.append(plan)
        work()

    monkeypatch.setattr(evaluate_cli, "launch_sharded", launch_sharded)
    return plans


def _invoke(args: list[str]):
    return CliRunner().invoke(app, args)


def test_evaluate_passes_the_library_defaults_and_prints_the_paths(tmp_path, seen) -> None:
    run = tmp_path / "run"
    result = _invoke(["evaluate", "--run", str(run)])
    assert result.exit_code == 0, result.output
    (call,) = seen
    assert call["options"] == EvaluateOptions()
    assert (call["run"], call["data"], call["force"], call["lime_baseline"]) == (
        run, None, False, None)  # fmt: skip
    out = run / "eval-test"
    assert call["out"] == out
    assert result.stdout.splitlines() == [
        f"results: {out / 'results.json'}",
        f"report:  {out / 'report.html'}",
    ]
    log = (out / "evaluate.log").read_text()
    for line in ("the stub checks", "the stub passed its checks", "the stub evaluated"):
        assert line in log, log


def test_evaluate_out_split_and_data(tmp_path, seen) -> None:
    run = tmp_path / "run"
    result = _invoke(["evaluate", "--run", str(run), "--split", "val", "--data", "lesions"])
    assert result.exit_code == 0, result.output
    assert seen[0]["out"] == run / "eval-val"
    assert seen[0]["data"] == "lesions" and seen[0]["options"].split == "val"
    result = _invoke(["evaluate", "--run", str(run), "--out", str(tmp_path / "o"), "--force"])
    assert result.exit_code == 0, result.output
    assert (seen[1]["out"], seen[1]["force"]) == (tmp_path / "o", True)
    assert (tmp_path / "o" / "evaluate.log").is_file()


def test_compare_passes_the_library_defaults_and_prints_the_paths(
    tmp_path, monkeypatch, seen
) -> None:
    monkeypatch.chdir(tmp_path)
    result = _invoke(["compare", "runs/a", "runs/b"])
    assert result.exit_code == 0, result.output
    (call,) = seen
    assert call["options"] == EvaluateOptions()
    assert (call["runs"], call["data"], call["out"], call["force"]) == (
        [Path("runs/a"), Path("runs/b")], None, Path("comparison"), False)  # fmt: skip
    assert result.stdout.splitlines() == [
        f"tables: {Path('comparison') / 'tables.md'}",
        f"report: {Path('comparison') / 'report.html'}",
    ]
    assert "the stub compared 2 runs" in (tmp_path / "comparison" / "compare.log").read_text()


@pytest.mark.parametrize("entry", ["results.json", "evaluate.log"])
def test_evaluate_refuses_a_users_file_before_the_evaluation(tmp_path, seen, entry) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / entry).write_text("mine")
    result = _invoke(["evaluate", "--run", str(tmp_path / "run"), "--out", str(out)])
    assert result.exit_code != 0 and seen == []
    assert entry in result.output and "--force" in result.output
    assert (out / entry).read_text() == "mine"


def test_compare_refuses_a_users_file_in_a_runs_folder(tmp_path, seen) -> None:
    out = tmp_path / "out"
    (out / "b").mkdir(parents=True)
    (out / "b" / "results.json").write_text("mine")
    args = ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]
    result = _invoke(args)
    assert result.exit_code != 0 and seen == []
    assert "results.json" in result.output
    assert (out / "b" / "results.json").read_text() == "mine"
    (out / "b" / "results.json").unlink()
    (out / "compare.log").write_text("mine")
    result = _invoke(args)
    assert result.exit_code != 0 and seen == []
    assert "compare.log" in result.output


@pytest.mark.parametrize("command", ["evaluate", "compare"])
def test_force_removes_a_users_log_once_the_checks_pass(tmp_path, seen, command) -> None:
    out = tmp_path / "out"
    out.mkdir()
    log = out / f"{command}.log"
    log.write_text("the user's own line\n")
    runs = ["--run", str(tmp_path / "a")] if command == "evaluate" else [str(tmp_path / "a")]
    result = _invoke([command, *runs, "--out", str(out), "--force"])
    assert result.exit_code == 0, result.output
    text = log.read_text()
    assert "the user's own line" not in text and "the stub" in text


@pytest.mark.parametrize("command", ["evaluate", "compare"])
def test_a_refused_evaluation_leaves_a_users_log_under_force(tmp_path, seen, command) -> None:
    out = tmp_path / "out"
    out.mkdir()
    log = out / f"{command}.log"
    log.write_text("the user's own line\n")
    results = out / ("a" if command == "compare" else ".") / "results.json"  # a's, in compare
    results.parent.mkdir(exist_ok=True)
    results.write_text("mine")
    seen.append({"refuse": True})
    runs = ["--run", str(tmp_path / "a")] if command == "evaluate" else [str(tmp_path / "a")]
    result = _invoke([command, *runs, "--out", str(out), "--force"])
    assert result.exit_code == 2 and "refused by the evaluation" in result.output
    assert "replacing" not in result.output  # (said once the checks pass)
    assert log.read_text() == "the user's own line\n" and results.read_text() == "mine"


@pytest.mark.parametrize("command", ["evaluate", "compare"])
def test_bad_options_are_refused_before_the_evaluation(tmp_path, seen, command) -> None:
    runs = ["--run", str(tmp_path / "a")] if command == "evaluate" else [str(tmp_path / "a")]
    result = _invoke([command, *runs, "--out", str(tmp_path / "out"), "--seed", "-1"])
    assert result.exit_code == 2 and seen == []
    assert "Invalid value: seed must be an int from 0 to 4294967295, got -1" in result.output


def test_another_rank_evaluates_quietly_and_leaves_the_checks_to_rank_zero(
    tmp_path, monkeypatch, seen, launches
) -> None:
    monkeypatch.setenv("LOCAL_RANK", "1")
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("mine")  # rank 0 refuses it, once
    result = _invoke(["evaluate", "--run", str(tmp_path / "run"), "--out", str(out)])
    assert (result.exit_code, result.output) == (0, "")
    assert len(seen) == 1 and len(launches) == 1
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]  # no log of its own


def test_a_sharded_evaluation_reads_the_run_before_any_process_starts(
    tmp_path, monkeypatch, seen, launches
) -> None:
    monkeypatch.setenv("MASTER_ADDR", "localhost")  # a manual launch of node 0 of 2
    monkeypatch.setenv("NODE_RANK", "0")
    args = ["evaluate", "--run", str(tmp_path / "nowhere"), "--num-nodes", "2"]
    result = _invoke(args)
    assert result.exit_code == 2 and "nowhere does not exist" in result.output
    assert launches == [] and seen == []
    result = _invoke(["evaluate", "--run", str(tmp_path / "nowhere")])  # one process: read later
    assert (result.exit_code, len(launches), len(seen)) == (0, 1, 1), result.output
    assert launches[0].world_size == 1
