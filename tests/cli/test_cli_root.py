"""The torchlap command: --help, --version, and the layer benchmark command."""

import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import torchlap
from torchlap.cli import app, command_tree

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "bench" in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"torchlap {torchlap.__version__}"


@pytest.mark.parametrize("module", ["torchlap.cli", "torchlap"])
def test_console_script_entry_point(module: str):
    done = subprocess.run(
        [sys.executable, "-m", module, "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"torchlap {torchlap.__version__}"
    usage = subprocess.run([sys.executable, "-m", module, "nosuch"], capture_output=True, text=True)
    assert usage.returncode == 2
    assert usage.stderr.strip() == "Error: No such command 'nosuch'."


def test_bench_layer_rejects_bad_scale():
    result = runner.invoke(app, ["bench", "layer", "--scale", "0"])
    assert result.exit_code != 0
    assert "--scale" in result.output


def test_demo_help_states_the_settings_defaults():
    """The --image-size help read "(default: DemoSettings')." (a fragment); the defaults the
    help states come from DemoSettings, so they cannot drift from what runs."""

    from torchlap.demo import DemoSettings

    demo = command_tree().commands["demo"]
    helps = {p.name: p.help for p in demo.params}
    assert helps["image_size"].endswith(f"(default {DemoSettings.image_size}).")
    assert helps["epochs"].endswith(f"(default {DemoSettings.epochs}).")
    assert helps["lr"].endswith(f"(default {DemoSettings.lr:g}).")


def test_torchlap_alone_shows_the_help_with_its_commands():
    result = runner.invoke(app, [])
    assert "Local Attention Pooling: CNNs that explain themselves." in result.output
    for command in ("demo", "train", "evaluate", "compare", "bench"):
        assert re.search(rf"^\W*{command}\b", result.output, re.MULTILINE), command
    assert "Missing command" not in result.output
