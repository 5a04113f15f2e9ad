"""Acceptance (issue 17): ``torchlap train`` and ``torchlap evaluate`` on tiny data print one
line per event, no Lightning banner or advertisement, epochs from 1; under a pseudo-terminal
the evaluation shows a live progress display."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

TORCHLAP = [sys.executable, "-m", "torchlap.cli"]
BANNERS = ("GPU available", "TPU available", "litlogger", "Tip:", "Lightning Experiments",
           "Loading `train_dataloader`", "INFO:")  # fmt: skip


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "NODE_RANK")}
    return env | {"OMP_NUM_THREADS": "1", "COLUMNS": "120", "TERM": "xterm"}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(
        TORCHLAP + args, cwd=cwd, capture_output=True, text=True, timeout=240, env=_env()
    )
    assert done.returncode == 0, done.stderr
    return done


def _check_lines(text: str) -> list[str]:
    lines = [line for line in text.splitlines() if line.strip()]
    repeated = sorted({line for line in lines if lines.count(line) > 1})
    assert not repeated, f"repeated lines: {repeated}"
    for banner in BANNERS:
        assert banner not in text, f"{banner!r} in the output:\n{text}"
    return lines


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    folder = tmp_path_factory.mktemp("cli_output")
    done = _run(
        ["train", "--data", "lesions", "--out", "run", "--arch", "smallcnn", "--epochs", "2",
         "--n-images", "48", "--image-size", "32", "--batch-size", "16"],
        folder,
    )  # fmt: skip
    return folder, done


def test_train_output_is_one_line_per_event_epochs_from_one(trained) -> None:
    folder, done = trained
    lines = _check_lines(done.stdout + done.stderr)
    epochs = [int(n) for n in re.findall(r"phase \d+ epoch (\d+): train", done.stderr)]
    assert epochs == [1, 2], done.stderr
    assert "run saved to run" in done.stdout
    log = (folder / "run" / "train.log").read_text()
    assert "GPU available" in log  # the log file keeps everything, Lightning's lines too
    assert all(line in log for line in lines if line.startswith("phase 1 epoch"))


def test_evaluate_output_is_one_line_per_event(trained) -> None:
    folder, _ = trained
    done = _run(
        ["evaluate", "--run", "run", "--methods", "lap", "--max-images", "4",
         "--max-val-images", "4", "--stability-images", "1"],
        folder,
    )  # fmt: skip
    _check_lines(done.stdout + done.stderr)
    assert (folder / "run" / "eval-test" / "evaluate.log").is_file()


def _run_in_pty(args: list[str], cwd: Path) -> tuple[int, str]:
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        TORCHLAP + args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=follower, env=_env()
    )
    os.close(follower)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read)
    reader.start()
    code = process.wait(timeout=240)
    reader.join(timeout=10)
    os.close(leader)
    return code, b"".join(chunks).decode(errors="replace")


def test_evaluate_under_a_terminal_shows_progress(trained) -> None:
    folder, _ = trained
    code, text = _run_in_pty(
        ["evaluate", "--run", "run", "--methods", "gradcam", "--max-images", "4",
         "--max-val-images", "4", "--stability-images", "1", "--out", "pty-eval"],
        folder,
    )  # fmt: skip
    assert code == 0, text
    assert "evaluating gradcam" in text and "ETA" in text and "image batches" in text
    assert "━" in text  # rich's bar
