"""What every command shares (``torchlap.cli_style``), on a small app of its own: ``-q`` and
``-v`` in either order on every sub-command, options grouped into their help panels, flags
without ``<bool>``, and the parsing of ``KEY=VALUE``, path and list options and of the options
a user gave."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import SimpleNamespace

import click
import click.testing
import pytest
import typer

from torchlap import logs
from torchlap.cli_style import (
    decorate_commands,
    given_options,
    key_values,
    listed_names,
    nonblank_path,
)


def _announce(value: str) -> str:
    """An option's own callback that logs (a deprecation, say) while the options are read."""
    if value:
        logging.getLogger("torchlap.evsmall").debug("note debug: %s", value)
        logging.getLogger("torchlap.evsmall").info("note info: %s", value)
    return value


def _group(decorate: bool = True) -> click.Command:
    """Two commands, ``train`` (its options partly in :data:`PANELS`) and ``go``: the group."""
    app = typer.Typer(add_completion=False)

    @app.command()
    def train(
        ctx: typer.Context,
        data: str = "x",
        seed: int = typer.Option(0, envvar="EVSMALL_SEED"),
        epochs: int = typer.Option(1, rich_help_panel="Mine"),
        fast: bool = typer.Option(False, "--fast"),
        marked: bool = typer.Option(False, "--marked", metavar="YES"),
        other: int = 1,
        note: str = typer.Option("", callback=_announce),
    ) -> None:
        log = logging.getLogger("torchlap.evsmall")
        log.debug("a debug line")
        log.info("an info line")
        log.warning("a warning line")
        typer.echo(f"given: {sorted(given_options(ctx))}")

    @app.command()
    def go(path: str = typer.Argument("p")) -> None:
        """Nothing."""

    @app.command()
    def mine(flag: bool = typer.Option(False, "--quiet", help="Mine, not torchlap's.")) -> None:
        """A command with its own quiet flag."""

    @app.command()
    def short(flag: bool = typer.Option(False, "-q", help="My own -q.")) -> None:
        """A command with its own short flag."""

    command = typer.main.get_command(app)
    if decorate:
        decorate_commands(command)
    return command


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """The commands set up logging: the root's handlers and levels are put back after."""
    root, ours = logging.getLogger(), logging.getLogger("torchlap")
    saved = (list(root.handlers), root.level, ours.level)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    ours.setLevel(saved[2])
    logs.set_progress_mode("auto")


def _invoke(command: click.Command, *args: str, **kwargs) -> click.testing.Result:
    result = click.testing.CliRunner().invoke(command, list(args), env={"COLUMNS": "120"}, **kwargs)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def _panel(text: str, title: str) -> str:
    """The lines of help panel ``title`` in ``text``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if f"─ {title} ─" in line)
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("╰"))
    return "\n".join(lines[start + 1 : end])


# --------------------------------------------------------------------------------- help


def test_every_command_gets_quiet_and_verbose_once_in_the_output_panel():
    command = _group()
    decorate_commands(command)  # again: nothing added twice
    for name in ("train", "go"):
        text = _invoke(command, name, "--help").output
        output = _panel(text, "Output")
        assert "--quiet" in output and "-q" in output and "--verbose" in output, text
        assert text.count("--quiet") == 1 and text.count("--verbose") == 1
        assert "completion" not in text
    assert "--quiet" in _invoke(command, "--help").output
    mine = _invoke(command, "mine", "--help").output  # a command's own -q or --quiet: kept
    assert mine.count("--quiet") == 1 and "Mine, not torchlap's." in mine
    assert "--quiet" not in _invoke(command, "short", "--help").output


def test_options_are_grouped_into_the_panels_of_their_command():
    text = _invoke(_group(), "train", "--help").output
    assert "--data" in _panel(text, "Data") and "--seed" in _panel(text, "Schedule")
    assert "--epochs" in _panel(text, "Mine")  # a panel of the option's own is kept
    assert "--other" in _panel(text, "Options") and "--fast" in _panel(text, "Options")
    assert "─ Data ─" not in _invoke(_group(), "go", "--help").output


def test_flags_show_no_bool_and_other_options_their_type():
    plain = _invoke(_group(decorate=False), "train", "--help").output
    assert "<bool>" in plain  # what typer shows without the decoration
    text = _invoke(_group(), "train", "--help").output
    assert "<bool>" not in text
    assert "<int>" in text and "YES" in text  # a type, a flag's own metavar: kept
    assert "[OPTIONS] [path]" in _invoke(_group(), "go", "--help").output  # an argument's name


# ------------------------------------------------------------------------------ -q / -v


@pytest.mark.parametrize(
    ("flags", "shown"),
    [
        ((), "an info line\nwarning: a warning line\n"),
        (("-v",), "a debug line\nan info line\nwarning: a warning line\n"),
        (("-q",), "warning: a warning line\n"),
        (("-q", "-v"), "warning: a warning line\n"),
        (("-v", "-q"), "warning: a warning line\n"),
    ],
)
def test_quiet_and_verbose_in_either_order(flags, shown):
    result = _invoke(_group(), "train", *flags)
    assert result.output == shown + "given: []\n"
    verbose = logging.getLogger("torchlap").getEffectiveLevel() == logging.DEBUG
    assert verbose == ("-v" in flags)  # -q -v: debug lines still reach a run's log file


def test_quiet_and_verbose_apply_before_other_options_are_read():
    """-q/-v are eager: a line an option's callback logs follows them wherever they stand."""
    assert "note debug: x" in _invoke(_group(), "train", "--note", "x", "-v").output
    quiet = _invoke(_group(), "train", "--note", "x", "-q").output
    assert "note info" not in quiet and "a warning line" in quiet


# ------------------------------------------------------------------------ given options


def test_given_options_are_those_on_the_command_line_or_in_the_environment():
    command = _group()
    assert _invoke(command, "train").output.endswith("given: []\n")
    result = _invoke(command, "train", "--data", "x", "--fast")
    assert result.output.endswith("given: ['data', 'fast']\n")
    result = click.testing.CliRunner().invoke(command, ["train"], env={"EVSMALL_SEED": "3"})
    assert result.output.endswith("given: ['seed']\n")
    result = _invoke(command, "train", default_map={"train": {"other": 5}})
    assert result.output.endswith("given: []\n")  # a configured default is not given


def test_given_options_of_a_context_without_sources_are_none():
    assert given_options(object()) == set()
    unknown = SimpleNamespace(params={"a": 1}, get_parameter_source=lambda name: None)
    assert given_options(unknown) == set()


# -------------------------------------------------------------------------- option text


def test_key_values_parse_json_values_and_keep_other_text():
    assert key_values(["a=1", " b =x", "c=[1, 2]", "d=", "e=a=b"], "--opt") == {
        "a": 1, "b": "x", "c": [1, 2], "d": "", "e": "a=b",
    }  # fmt: skip
    assert key_values(["a=1", "b=true"], "--opt", parse=False) == {"a": "1", "b": "true"}
    assert key_values(None, "--opt") == {} and key_values([], "--opt") == {}


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["a"], "--opt expects KEY=VALUE, got 'a'"),
        (["=1"], "--opt expects KEY=VALUE, got '=1'"),
        ([" =1"], "--opt expects KEY=VALUE, got ' =1'"),
        (["a=1", " a=2"], "--opt a is given twice; give each key once"),
    ],
)
def test_key_values_refuse_an_item_without_a_key_or_given_twice(items, message):
    with pytest.raises(ValueError) as error:
        key_values(items, "--opt")
    assert str(error.value) == message


def test_a_blank_path_is_refused_naming_the_option():
    for text in ("", "  "):
        with pytest.raises(ValueError, match=r"^--run is empty or blank; pass a run folder \("):
            nonblank_path(text, "--run", "a run folder")
    assert nonblank_path("out/x", "--out") == "out/x"
    assert nonblank_path(".", "--out") == "."


def test_a_list_with_an_empty_name_is_refused():
    assert listed_names("lap,gradcam", "--methods") == ["lap", "gradcam"]
    assert listed_names(" , ", "--methods") == []  # nothing named: the caller says what it needs
    for text in ("gradcam,,lap", "gradcam,"):
        with pytest.raises(ValueError, match=r"has an empty name \(two commas in a row"):
            listed_names(text, "--methods")
