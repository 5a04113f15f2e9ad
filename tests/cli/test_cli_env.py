"""``torchlap env``: what a bug report needs, read from the installed packages and this process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch
from typer.testing import CliRunner

import torchlap
import torchlap.environment as environment
from torchlap.cli import app

runner = CliRunner()
SRC = Path(torchlap.__file__).resolve().parent


def test_json_names_the_versions_threads_and_lap_paths(monkeypatch) -> None:
    monkeypatch.setenv("TORCHLAP_LAP_WINDOWS", "tiles")
    monkeypatch.delenv("TORCHLAP_FUSED_LAYER", raising=False)
    result = runner.invoke(app, ["env", "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.output)
    assert facts["torchlap"] == torchlap.__version__ and facts["torch"] == torch.__version__
    assert facts["threads"] == torch.get_num_threads()
    assert facts["cuda"] == []  # (no GPU on the test machines)
    assert facts["lap_pooling"]["cuda"] == "pure PyTorch (non-CPU device)"
    assert facts["switches"]["TORCHLAP_LAP_WINDOWS"] == "tiles"
    assert "TORCHLAP_FUSED_LAYER" not in facts["switches"]
    assert facts["packages"]["torch"] == metadata.version("torch")
    assert facts["packages"]["typer"] == metadata.version("typer")


def test_the_lines_say_the_same_as_the_json() -> None:
    facts = json.loads(runner.invoke(app, ["env", "--json"]).output)
    lines = runner.invoke(app, ["env"]).output.splitlines()
    assert f"torchlap: {facts['torchlap']}" in lines
    assert f"  cpu: {facts['lap_pooling']['cpu']}" in lines
    assert f"  torch: {facts['packages']['torch']}" in lines
    assert "cuda: none" in lines


def test_the_cpu_path_follows_the_switch_that_turns_the_kernels_off() -> None:
    code = "from torchlap.environment import describe_environment as d; print(d()['lap_pooling'])"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**_plain_env(), "TORCHLAP_NO_EXT": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert "'cpu': 'disabled by TORCHLAP_NO_EXT'" in done.stdout


def _plain_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("TORCHLAP_")}


def test_a_missing_package_is_named_not_installed(monkeypatch) -> None:
    requires = ["torch>=2.4", "nosuch-package-xyz>=1; extra == 'nope'", "torch[extra]>=2"]
    monkeypatch.setattr(metadata, "requires", lambda name: requires)
    found = environment.installed_requirements()
    assert found == {"nosuch-package-xyz": None, "torch": metadata.version("torch")}
    lines = environment._lines({"packages": found})
    assert "  nosuch-package-xyz: not installed" in lines


def test_torchlap_not_installed_with_pip_lists_no_packages(monkeypatch) -> None:
    def missing(name: str):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "requires", missing)
    assert environment.installed_requirements() == {}
    assert environment._lines({"packages": {}}) == ["packages: none"]


def test_every_switch_torchlap_reads_is_listed_and_every_listed_one_is_read() -> None:
    read = set()
    for path in SRC.rglob("*.py"):
        if path.name != "environment.py":
            read |= set(re.findall(r"\"(TORCHLAP_[A-Z_]+)\"", path.read_text(encoding="utf-8")))
    listed = {name for name in environment.SWITCHES if name.startswith("TORCHLAP_")}
    assert read == listed
