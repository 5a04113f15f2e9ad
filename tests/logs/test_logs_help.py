"""Every command's help: a one-line summary, an example, the CPU cost of its defaults, -q/-v,
and no ``<bool>`` after a flag."""

from __future__ import annotations

from typer.testing import CliRunner

from torchlap.cli import app, command_tree


def _leaves(command, path):
    subs = getattr(command, "commands", None)
    if not subs:
        yield path
        return
    for name, sub in subs.items():
        yield from _leaves(sub, [*path, name])


def test_every_command_has_example_cost_and_verbosity() -> None:
    runner = CliRunner()
    root = command_tree()
    leaves = list(_leaves(root, []))
    assert ["export"] in leaves and ["train"] in leaves
    missing = []
    for path in leaves:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        text = result.output
        if not ("Example:" in text and "Cost" in text and "--quiet" in text and "-v" in text):
            missing.append(" ".join(path))
        assert "<bool>" not in text, path
    assert not missing, f"commands without example/cost/-q/-v in their help: {missing}"
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    assert "<bool>" not in top and "--verbose" in top
