"""The command line loads each command's module when that command is used: ``torchlap --help``,
``--version`` and a mistyped command import no PyTorch, the listed help lines are the loaded
commands' own, and a command that fails to load says so in one line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

import torchlap
from torchlap.cli import LazyGroup, app, command_tree

runner = CliRunner()

# the arguments, then the modules the run may not import
_CHEAP = [
    (["--help"], ("torch", "torchvision", "torchlap.layers", "torchlap.train")),
    (["--version"], ("torch", "torchlap.layers")),
    ([], ("torch",)),
    (["trian"], ("torch",)),
    (["bench", "--help"], ("torch", "torchlap.bench.layer")),
    (["bench", "layer", "--help"], ("torchvision", "torchlap.train", "torchlap.evaluate")),
]


def _imported_after(args: list[str]) -> tuple[int, str, set[str]]:
    """Exit code, output and imported modules of ``torchlap ARGS`` in a fresh interpreter."""
    code = textwrap.dedent(
        f"""
        import json, sys
        from typer.testing import CliRunner
        from torchlap.cli import app
        result = CliRunner().invoke(app, {args!r})
        print(json.dumps([result.exit_code, result.output, sorted(sys.modules)]))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    import json

    exit_code, output, modules = json.loads(done.stdout.splitlines()[-1])
    return exit_code, output, set(modules)


@pytest.mark.parametrize(("args", "absent"), _CHEAP, ids=lambda v: " ".join(v) or "none")
def test_answers_without_importing_what_it_does_not_need(args: list[str], absent) -> None:
    exit_code, output, modules = _imported_after(args)
    assert exit_code in (0, 2), output
    assert output.strip()
    assert not modules & set(absent), sorted(modules & set(absent))


def test_a_run_command_imports_its_module_only_then() -> None:
    exit_code, output, modules = _imported_after(["data", "list"])
    assert exit_code == 0, output
    assert output.split() == ["concepts", "digits", "lesions"]
    assert "torchlap.data.cli" in modules and "torchlap.train.cli" not in modules


def test_a_mistyped_command_is_named_with_the_nearest_one() -> None:
    result = runner.invoke(app, ["trian"])
    assert result.exit_code == 2
    assert "No such command 'trian'. Did you mean 'train'?" in result.output


def _first_paragraph(text: str) -> str:
    return " ".join(text.strip().split("\n\n")[0].split())


def _groups() -> list[type[LazyGroup]]:
    root = typer.main.get_group(app)
    return [type(root), type(root.commands["bench"])]


@pytest.mark.parametrize("group", _groups(), ids=lambda g: g.__name__)
def test_each_listed_help_line_is_the_loaded_commands_own(group: type[LazyGroup]) -> None:
    """The group lists a command before loading it by the line in its table; that line is the
    first paragraph of the command's own help (so the two cannot drift apart)."""
    tree = command_tree()
    holder = tree if group is type(tree) else tree.commands["bench"]
    assert list(group.lazy) == [n for n in holder.commands if n in group.lazy]
    for name, (_, _, line) in group.lazy.items():
        loaded = holder.commands[name]
        assert not isinstance(loaded, typer.core.TyperCommand) or loaded.callback is not None
        assert _first_paragraph(loaded.help) == line, name


def test_the_listing_shows_every_command_and_loads_none() -> None:
    root = typer.main.get_group(app)
    listed = runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    for name, (_, _, line) in type(root).lazy.items():
        assert name in listed
        assert line.replace("`", "") in " ".join(listed.split()), name


def test_a_loaded_command_has_the_shared_options() -> None:
    group = typer.main.get_group(app)
    train = group.get_command(typer.Context(group), "train")
    names = {opt for param in train.params for opt in getattr(param, "opts", ())}
    assert {"-q", "--quiet", "-v", "--verbose"} <= names
    assert group.load("train") is train  # loaded once


def test_a_command_whose_module_fails_to_load_says_so(monkeypatch) -> None:
    """A command module that cannot be imported (a missing optional dependency) fails that
    command alone, with one line naming the module and exit 1; the others still run."""
    root_class = type(typer.main.get_group(app))
    broken = {**root_class.lazy, "train": ("torchlap_no_such_module", "register", "Broken.")}
    monkeypatch.setattr(root_class, "lazy", broken)
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: No module named 'torchlap_no_such_module'"
    assert runner.invoke(app, ["--help"]).exit_code == 0
    assert runner.invoke(app, ["data", "list"]).exit_code == 0


def test_import_torchlap_is_cheap_and_every_public_name_still_resolves() -> None:
    code = (
        "import sys, torchlap\n"
        "cheap = 'torch' not in sys.modules\n"
        "names = [getattr(torchlap, n) for n in torchlap.__all__]\n"
        "areas = [torchlap.layers, torchlap.models, torchlap.metrics]\n"
        "print(cheap, all(n is not None for n in names), 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "True"]


def test_an_unknown_name_of_the_package_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'lapfy'"):
        torchlap.lapfy  # noqa: B018
    from torchlap import LocalAttentionPool2d, lapify

    assert torchlap.lapify is lapify and torchlap.LocalAttentionPool2d is LocalAttentionPool2d
    assert {"lapify", "layers"} <= set(dir(torchlap))


def _walk(command: Any) -> list[Any]:
    subs = getattr(command, "commands", {})
    return [command, *(c for sub in subs.values() for c in _walk(sub))]


def test_command_tree_loads_everything() -> None:
    tree = command_tree()
    commands = _walk(tree)
    assert not [c.name for c in commands if type(c).__name__ == "_Unloaded"]
    assert {c.name for c in commands} >= {"train", "evaluate", "layer", "model", "export", "check"}


@pytest.mark.parametrize("args", [[], ["data"], ["bench"]], ids=lambda a: " ".join(a) or "none")
def test_a_group_called_alone_shows_its_help_and_no_error_line(args: list[str]) -> None:
    """``torchlap data`` printed its help, then an empty ``Error: `` line on stderr (the
    one-line error style took the help request for an error); ``torchlap bench`` printed
    ``Error: Missing command.``. Each group called alone now shows its help, as ``torchlap``
    alone does, with click's exit code for it."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert f"Usage: torchlap {' '.join(args)}".replace("  ", " ").strip() in result.stdout
    assert "Commands" in result.stdout
    assert result.stderr == ""
