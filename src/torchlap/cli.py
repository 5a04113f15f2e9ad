"""The ``torchlap`` command line.

Sub-commands live next to the code they drive; this module only wires them together so
that ``torchlap --help`` lists everything.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torchvision
import typer
from typer._click.exceptions import ClickException, UsageError
from typer.core import TyperGroup

from torchlap import __version__
from torchlap.allocator import keep_freed_memory
from torchlap.bench.layer import run_layer_command
from torchlap.cli_style import decorate_commands, nonblank_path
from torchlap.data import builtin_names
from torchlap.data.builtin import MAX_IMAGE_SIZE
from torchlap.demo import DEMO_OUTPUTS, SUITES, DemoSettings, run_demo
from torchlap.evaluate.common import clear_output_folder, guard_output_folder
from torchlap.logs import launcher_rank, log_file, process_rank
from torchlap.models.backbones import SMALL_ARCHS
from torchlap.train.config import MAX_EPOCHS

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


class _OneErrorStyleGroup(TyperGroup):
    """Every command's error as one line on stderr (exit 2 input, 1 failure; in a sharded
    command's other processes prefixed ``rank N: ``); ``--debug`` or ``TORCHLAP_DEBUG=1``
    re-raises it with its traceback instead."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        decorate_commands(self)  # -q/-v on every command; flags without "<bool>"

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
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
bench_app = typer.Typer(
    help="Speed and memory benchmarks (ratios against a reference).", rich_markup_mode="markdown"
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


# "(default N)" of the demo's options that default to DemoSettings' values
_DEFAULT = {
    name: f"(default {getattr(DemoSettings, name):g})" for name in ("epochs", "lr", "image_size")
}


@app.command("demo")
def demo(
    out: str = typer.Option("demo-output", "--out", help="Folder for the runs and the report."),
    scale: float = typer.Option(1.0, "--scale", help="Grow (>1) or shrink (<1) data and eval."),
    epochs: int = typer.Option(None, "--epochs", help=f"Epochs per run {_DEFAULT['epochs']}."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Retrain and re-evaluate."),
    suite: str = typer.Option(
        "main",
        "--suite",
        help="main (vanilla, weak-LAP, expert-LAP; with --bcos also B-cos) or peers (also BLA, "
        "BLA-T, BLA-PH, L2X-F, ante-hoc).",
    ),
    data: str = typer.Option(
        "lesions", "--data", help="Built-in benchmark (lesions, concepts, digits)."
    ),
    arch: str = typer.Option(
        "resnet18", "--arch", help="Architecture of every run (resnet18 uses the paper's preset)."
    ),
    lr: float = typer.Option(None, "--lr", help=f"Learning rate {_DEFAULT['lr']}."),
    image_size: int = typer.Option(
        None, "--image-size", help=f"Input size in px of every run {_DEFAULT['image_size']}."
    ),
    bcos: bool = typer.Option(
        False, "--bcos", help="Also train and evaluate a B-cos ResNet-20 (extra torchlap[bcos])."
    ),
    perturbation: bool = typer.Option(
        False,
        "--perturbation",
        help="Also evaluate Score-CAM, RISE and SISE (about 25 s per image and run at 128 px "
        "on a 2-core CPU).",
    ),
) -> None:
    """Train vanilla, weak-LAP and expert-LAP ResNet18 on `lesions` and compare their maps.

    Evaluates the models' own maps (LAP) and the gradient explainers on the runs
    (`--perturbation` adds Score-CAM, RISE and SISE; `--bcos`: a B-cos ResNet-20 joins the
    runs), runs the sanity checks and the grid pointing game for them, and writes one
    comparison report (`--suite peers` adds the self-explaining peers). An interrupted demo
    resumes.

    Example: `torchlap demo --out demo-output` (quick look: `--scale 0.1 --epochs 1`)

    Cost with the defaults: 4-6 min on a quiet 2-core CPU with AVX-512 with the sanity checks
    and the grid pointing game (212-253 s on 2026-12-03; 346 s on 2026-12-06 in a slower spell
    of the host, where an epoch took as long with the 12-03 code), plus the venv install (about
    1.5 min); about 11 min on a 2-core AVX2 CPU (645 s, 2026-12-02).
    """
    _check_demo_names(suite, data, arch)
    try:
        settings = DemoSettings(data=data, arch=arch).scaled(scale)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    if lr is not None:
        if not (lr > 0 and math.isfinite(lr)):
            raise typer.BadParameter(f"--lr must be > 0 and finite, got {lr}")
        settings.lr = lr
    settings.bcos, settings.perturbation = bcos, perturbation
    if image_size is not None:
        if not 32 <= image_size <= MAX_IMAGE_SIZE:  # (the built-in benchmarks' sizes)
            raise typer.BadParameter(
                f"--image-size must be >= 32 px and <= {MAX_IMAGE_SIZE}, got {image_size}"
            )
        settings.image_size = image_size
    if epochs is not None:
        if not 1 <= epochs <= MAX_EPOCHS:
            raise typer.BadParameter(f"--epochs must be >= 1 and <= {MAX_EPOCHS}, got {epochs}")
        settings.epochs = epochs
    # "" (the current folder, to fill with runs/) refused
    out = Path(nonblank_path(out, "--out"))
    started = time.perf_counter()
    with _demo_log(out, overwrite) as on_checked:  # every line of the demo, its runs included
        report = run_demo(out, settings, overwrite=overwrite, suite=suite, on_checked=on_checked)
    typer.echo(f"demo finished in {time.perf_counter() - started:.0f} s")
    typer.echo(f"tables: {report.parent / 'tables.md'}")
    typer.echo(f"report: {report}")


def _check_demo_names(suite: str, data: str, arch: str) -> None:
    """``--suite``, ``--data`` (a built-in benchmark) and ``--arch`` (a torchvision classifier
    or torchlap's small CNN: the demo's runs build nothing else), before the demo checks its
    folders or opens its log."""
    if suite not in SUITES:
        raise typer.BadParameter(f"unknown --suite {suite!r}; expected one of {', '.join(SUITES)}")
    if data not in builtin_names():
        raise typer.BadParameter(
            f"unknown --data {data!r}; the demo runs on a built-in benchmark: "
            f"{', '.join(builtin_names())}"
        )
    known = torchvision.models.list_models(module=torchvision.models)
    if arch not in SMALL_ARCHS and arch not in known:
        raise typer.BadParameter(
            f"unknown --arch {arch!r}; the demo's runs take a torchvision classifier (e.g. "
            f"resnet18, resnet50; {len(known)} in all) or {', '.join(SMALL_ARCHS)}"
        )


@contextmanager
def _demo_log(out: Path, overwrite: bool) -> Iterator[Callable[[], None]]:
    """``out/demo.log`` while the block runs; yields the demo's ``on_checked``. Before the log
    opens: a demo.log torchlap did not write is refused, never appended to; with
    ``--overwrite`` it is removed once the demo checked its folders (a refused demo removes
    nothing), and the log opens then."""
    foreign = guard_output_folder(
        out, overwrite, flag="--overwrite", names=DEMO_OUTPUTS, apply=False
    )
    logs = [path for path in foreign if path.name == "demo.log"]
    checked: list[bool] = []

    def on_checked() -> None:
        clear_output_folder(out, logs, "--overwrite")
        checked.append(True)

    with log_file(out / "demo.log", ready=lambda: bool(checked) and out.is_dir()):
        yield on_checked


@bench_app.command("layer")
def bench_layer(
    device: str = typer.Option("cpu", help="Device to run on (cpu, cuda, cuda:1, ...)."),
    scale: float = typer.Option(
        1.0, help="Fraction of the batch of 32 (e.g. 0.25 for a quick look)."
    ),
    batches: str = typer.Option("32,1", help="Comma-separated batch sizes of every shape."),
    rounds: int = typer.Option(5, help="Interleaved rounds of 3 calls (the fastest call counts)."),
) -> None:
    """Time LAP forward+backward and its peak memory against avg/max pooling (same tensors).

    Example: `torchlap bench layer --scale 0.25`

    Cost with the defaults: a few minutes on a 2-core CPU (`--scale 0.25`: under a minute).
    """
    try:
        typer.echo(run_layer_command(device, scale, batches, rounds))
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


# --- sub-command registration: one line per area -------------------------------------------
# (each area defines its commands in its own module; keep this block one import per line)
from torchlap.data.cli import data_app  # noqa: E402

app.add_typer(data_app, name="data")
from torchlap.train.cli import register_train  # noqa: E402

register_train(app)
from torchlap.bench.explain import register_bench  # noqa: E402

register_bench(bench_app)
from torchlap.bench.model import register_model_bench  # noqa: E402

register_model_bench(bench_app)
from torchlap.evaluate.cli import register_evaluate  # noqa: E402

register_evaluate(app)
from torchlap.evaluate.explain import register_explain  # noqa: E402

register_explain(app)
from torchlap.export import register_export  # noqa: E402

register_export(app)
# -------------------------------------------------------------------------------------------


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
