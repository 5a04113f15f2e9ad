"""The ``torchlap`` command line.

Sub-commands live next to the code they drive; this module only wires them together so
that ``torchlap --help`` lists everything. It imports none of them (nor PyTorch): each
command's module loads when that command runs or shows its help (:class:`LazyGroup`), so
``torchlap --help``, ``--version`` and a mistyped command answer at once.
"""

from __future__ import annotations

import errno
import importlib
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer.core import TyperCommand, TyperGroup

from torchlap import __version__
from torchlap.allocator import keep_freed_memory
from torchlap.cli_style import decorate_commands
from torchlap.logs import launcher_rank, process_rank

_DEBUG_ENV = "TORCHLAP_DEBUG"
# bad input the user fixes by changing the command or its files: exit 2 (as click's usage
# errors); anything else (a failure while working, a missing optional extra): exit 1
_INPUT_ERRORS = (ValueError, TypeError, LookupError, FileNotFoundError, FileExistsError,
                 NotADirectoryError, IsADirectoryError, PermissionError)  # fmt: skip


#: the longest run of characters without a space an error line shows whole: a longer one (a
#: 5000-character value echoed back) is cut to its start, with its length
_LONGEST_SHOWN = 200
_LONG_RUN = re.compile(rf"\S{{{_LONGEST_SHOWN + 1},}}")


def _shortened(match: re.Match[str]) -> str:
    run = match.group()
    body = run.rstrip(",;:.!?")  # the sentence's punctuation after the value is kept
    value = body.rstrip("'\")]}").lstrip("'\"([{")  # the length is the value's, quotes left out
    return f"{run[:60]}...({len(value)} characters){run[len(body) :]}"


def error_line(error: BaseException) -> str:
    """The one line ``Error: <what was wrong>; <what is accepted>`` printed for ``error``; a
    value longer than 200 characters in it is shown by its first 60 and its length."""
    if isinstance(error, ClickException):
        text = error.format_message()
    else:
        text = str(error) or type(error).__name__
        if isinstance(error, KeyError) and len(error.args) == 1:
            text = f"missing key {error.args[0]!r}"
        elif isinstance(error, OSError) and error.errno == errno.ENAMETOOLONG:
            text = f"a path is too long for the file system: {error.filename!r}"
    return "Error: " + _LONG_RUN.sub(_shortened, " ".join(text.split()))


def exit_code(error: BaseException) -> int:
    """2 for usage and input errors (a path too long for the file system among them), 1 for
    failures."""
    if isinstance(error, ClickException):
        return 2 if isinstance(error, UsageError) else 1
    if isinstance(error, OSError) and error.errno == errno.ENAMETOOLONG:
        return 2
    return 2 if isinstance(error, _INPUT_ERRORS) else 1


def _debug_enabled(ctx: typer.Context) -> bool:
    return bool(ctx.meta.get("torchlap.debug")) or os.environ.get(_DEBUG_ENV, "") not in (
        "",
        "0",
    )


def _other_rank() -> str | None:
    """``None`` in rank 0 (or the only process), else this process's ``rank N`` (a DDP worker
    re-running the command line: the launcher's global rank, or ``node K local rank L`` when
    Lightning's launcher on several nodes gives only those)."""
    if process_rank() == 0:
        return None
    found = launcher_rank()
    if found is not None:
        return f"rank {found[1]}"
    node, local = os.environ.get("NODE_RANK", "0"), os.environ.get("LOCAL_RANK", "0")
    return f"rank {local}" if node in ("", "0") else f"node {node} local rank {local}"


def _peer_gone(error: BaseException) -> bool:
    """Whether ``error`` is torch.distributed's report of a process group whose peer left (a
    ``DistError``, or gloo's "Connection closed by peer" as a plain ``RuntimeError``)."""
    import torch.distributed  # (loaded by then in a sharded command)

    gone = isinstance(error, getattr(torch.distributed, "DistError", ()))
    return gone or "Connection closed by peer" in str(error)


#: what a lazy command is: (module, attribute, the help line listed before it loads); the
#: attribute is a Typer app (a group of sub-commands) or a function that registers the command
#: on the Typer app it is given (as ``register_train(app)``)
LazyEntry = tuple[str, str, str]


class _Unloaded(TyperCommand):
    """A lazy command's stand-in in its group's listing: name and help line, nothing to run."""


class LazyGroup(TyperGroup):
    """A group whose commands in :attr:`lazy` import their module on first use: the group's
    help lists them from their help lines without importing anything, and a command's module
    loads when the command is run or asked for its help; it gets the shared options
    then (:func:`~torchlap.cli_style.decorate_commands`)."""

    lazy: ClassVar[dict[str, LazyEntry]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listing = False
        # listed in the table's order, before the commands typer registered (a light group
        # such as ``bench`` is registered as it is)
        lazy = {name: _Unloaded(name=name, help=line) for name, (_, _, line) in self.lazy.items()}
        self.commands = {**lazy, **self.commands}
        decorate_commands(self)  # -q/-v on every command; flags without "<bool>"

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        with self._listing_only():
            super().format_help(ctx, formatter)

    @contextmanager
    def _listing_only(self) -> Iterator[None]:
        self._listing = True
        try:
            yield
        finally:
            self._listing = False

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:
        command = self.commands.get(cmd_name)
        if isinstance(command, _Unloaded) and not self._listing:
            command = self.load(cmd_name)
        return command

    def load(self, name: str) -> Any:
        """The command ``name`` with its module imported (once)."""
        command = self.commands[name]
        if not isinstance(command, _Unloaded):
            return command
        module, attribute, _ = self.lazy[name]
        found = getattr(importlib.import_module(module), attribute)
        holder = typer.Typer(rich_markup_mode="markdown")  # (the root's markup: the same help)
        if isinstance(found, typer.Typer):
            holder.add_typer(found, name=name)
        else:
            found(holder)
        command = typer.main.get_group(holder).commands[name]
        decorate_commands(command, name=name)
        self.commands[name] = command
        return command

    def load_all(self) -> None:
        """Every command of the group and of its sub-groups loaded (the docs' CLI reference and
        the tests walk the whole tree)."""
        for name in list(self.commands):
            command = self.get_command(typer.Context(self), name)
            if isinstance(command, LazyGroup):
                command.load_all()


class _OneErrorStyleGroup(LazyGroup):
    """The ``torchlap`` group: its commands load on first use (:attr:`lazy`, in the order of
    its help), and every command's error is one line on stderr (exit 2 input, 1 failure; in a
    sharded command's other processes prefixed ``rank N: ``); ``--debug`` or
    ``TORCHLAP_DEBUG=1`` re-raises it with its traceback instead."""

    lazy: ClassVar[dict[str, LazyEntry]] = {
        "demo": ("torchlap.demo_cli", "register_demo",
                 "Train vanilla, weak-LAP and expert-LAP ResNet18 on `lesions` and compare their "
                 "maps."),
        "train": ("torchlap.train.cli", "register_train",
                  "Train a classifier (vanilla or LAP) with cross-entropy and knowledge "
                  "injection."),
        "evaluate": ("torchlap.evaluate.cli", "register_evaluate",
                     "Every metric of the papers for one run and every method, with a report."),
        "compare": ("torchlap.evaluate.cli", "register_evaluate",
                    "Evaluate several runs (vanilla, weak, expert, ...) into one table and "
                    "report."),
        "explain": ("torchlap.evaluate.explain", "register_explain",
                    "Explain a run's predictions on images: one PNG figure and one .npz of maps "
                    "each."),
        "export": ("torchlap.export", "register_export",
                   "Export a LAP run's model with its maps: logits, each LAP layer's map and LAP "
                   "All."),
        "data": ("torchlap.data.cli", "data_app",
                 "Datasets: export the built-in benchmarks, check annotated folders."),
        "env": ("torchlap.environment", "register_env",
                "Print versions, threads, accelerators and the path LAP takes: what a bug report "
                "needs."),
    }  # fmt: skip

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except NoArgsIsHelpError:  # a group called alone: its help is shown, as the root's
            raise
        except Exception as error:
            if _debug_enabled(ctx):
                raise
            # rank 0 alone logs (and its error is often the others' "Connection closed by
            # peer"), so another rank that fails says why itself, once, naming its rank; a
            # dropped connection on another rank is the echo of a peer's failure: not repeated
            rank = _other_rank()
            if rank is None or not _peer_gone(error):
                line = error_line(error)
                typer.echo(line if rank is None else f"{rank}: {line}", err=True)
            if not isinstance(error, (ClickException, *_INPUT_ERRORS)):
                logging.getLogger("torchlap").debug("failure", exc_info=error)
            raise typer.Exit(exit_code(error)) from None


app = typer.Typer(
    name="torchlap",
    help="Local Attention Pooling: CNNs that explain themselves.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_OneErrorStyleGroup,
    rich_markup_mode="markdown",  # docstring paragraphs re-flowed, not cut at source lines
)


class _BenchGroup(LazyGroup):
    """``torchlap bench``: each benchmark loads with its command."""

    lazy: ClassVar[dict[str, LazyEntry]] = {
        "layer": ("torchlap.bench.layer", "register_layer_bench",
                  "Time LAP forward+backward and its peak memory against avg/max pooling (same "
                  "tensors)."),
        "explain": ("torchlap.bench.explain", "register_bench",
                    "Time every explainer on one LAP-ResNet18 (images/s, ratio to `lap`, "
                    "passes/image)."),
        "model": ("torchlap.bench.model", "register_model_bench",
                  "Train-step and forward time of lapified models against their vanilla twins, "
                  "next to the ratio of their counted multiply-adds."),
    }  # fmt: skip


bench_app = typer.Typer(
    help="Speed and memory benchmarks (ratios against a reference).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    cls=_BenchGroup,
)
app.add_typer(bench_app, name="bench")


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"torchlap {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
    debug: bool = typer.Option(
        False, "--debug", help=f"Show the traceback of an error (or set {_DEBUG_ENV}=1)."
    ),
) -> None:
    """Local Attention Pooling: CNNs that explain themselves."""
    ctx.meta["torchlap.debug"] = debug


def command_tree() -> TyperGroup:
    """The ``torchlap`` click group with every command loaded (each area's module imported):
    for the docs' CLI reference and the tests that walk the commands."""
    root = typer.main.get_group(app)
    root.load_all()
    return root


def main() -> None:
    """Entry point of the ``torchlap`` console script.

    The command owns its process, so it lets malloc keep freed memory for reuse
    (:func:`torchlap.allocator.keep_freed_memory`; ``TORCHLAP_KEEP_FREED_MEMORY=0`` turns it
    off): CPU forwards 1.4-1.5x faster at 224 px, measured.
    """
    keep_freed_memory()
    app()


if __name__ == "__main__":
    main()
