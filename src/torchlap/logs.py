"""Logging and progress for torchlap: one logging setup, one progress library (rich).

The command line calls :func:`setup_logging` once per command (``-q``/``-v`` choose the level):

* one line per event on stderr: torchlap's INFO messages, everyone's warnings and errors;
  a message already shown during the command is not shown again (the log file keeps it);
* Lightning's INFO chatter (device lines, tips, "Loading `train_dataloader` ...") goes to the
  log file only (``-v`` shows it); its warnings stay on stderr;
* under multi-process runs only rank 0 writes (stderr and the log file);
* :func:`log_file` adds a file with everything (``RUN/train.log``, ``OUT/evaluate.log``).

Progress (:func:`track`, and :func:`lightning_progress_callbacks` for training) is a rich
display with an ETA when stderr is a terminal, and plain periodic log lines otherwise (CI,
logs); ``-q`` turns it off. Library users who never call :func:`setup_logging` get the rich
display on a terminal and nothing otherwise (the plain lines are INFO records of the
``torchlap.progress`` logger, shown only where logging is configured).
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "LIGHTNING_LOGGERS",
    "PLAIN_INTERVAL_SECONDS",
    "adopt_lightning_loggers",
    "kept_rich_console",
    "launcher_rank",
    "lightning_progress_callbacks",
    "log_file",
    "process_rank",
    "progress_mode",
    "set_progress_mode",
    "setup_logging",
    "track",
]

T = TypeVar("T")

#: the loggers Lightning writes its INFO lines to (configured, not silenced: warnings pass)
LIGHTNING_LOGGERS = (
    "lightning",
    "lightning.pytorch",
    "lightning.fabric",
    "lightning_fabric",
    "pytorch_lightning",
    "lightning_utilities",
)
#: seconds between two plain progress lines (stderr not a terminal)
PLAIN_INTERVAL_SECONDS = 10.0
PROGRESS_MODES = ("auto", "rich", "plain", "off")

_MARK = "_torchlap_handler"
_progress_logger = logging.getLogger("torchlap.progress")


#: each launcher's global-rank variable and the variable of its process count
#: (torchrun and Lightning, SLURM's srun, MPICH/Intel MPI, Open MPI)
RANK_VARIABLES = (
    ("RANK", "WORLD_SIZE"),
    ("SLURM_PROCID", "SLURM_NTASKS"),
    ("PMI_RANK", "PMI_SIZE"),
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
)


def launcher_rank() -> tuple[str, int] | None:
    """``(variable, value)`` of the first global-rank variable a launcher set, or None. A rank
    counts only next to its launcher's process count above 1 (every launcher sets both;
    Lightning's SLURM detection needs ``SLURM_NTASKS`` too): a ``RANK=1`` left in a shell,
    alone or with ``WORLD_SIZE=1``, is no launch of several processes, and such a process was
    taken for a worker (no console warnings, no log file)."""
    for name, size_name in RANK_VARIABLES:
        value, size = os.environ.get(name, ""), os.environ.get(size_name, "")
        if value.isdigit() and size.isdigit() and int(size) > 1:
            return name, int(value)
    return None


def process_rank() -> int:
    """The global rank of this process under Lightning/torchrun/SLURM/MPI launchers, else 0
    (see :func:`launcher_rank`; Lightning's own launcher: ``NODE_RANK`` + ``LOCAL_RANK``)."""
    found = launcher_rank()
    if found is not None:
        return found[1]
    node = os.environ.get("NODE_RANK", "0")
    local = os.environ.get("LOCAL_RANK", "0")
    return (int(node) if node.isdigit() else 0) + (int(local) if local.isdigit() else 0)


class _RankZero(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return process_rank() == 0


class _ConsoleFilter(logging.Filter):
    """torchlap's INFO and everyone's warnings, each distinct message once per command."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose
        self.seen: set[tuple[str, int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if process_rank() != 0:
            return False
        ours = record.name == "torchlap" or record.name.startswith("torchlap.")
        if record.levelno < logging.WARNING and not (ours or self.verbose):
            return False
        try:
            key = (record.name, record.levelno, record.getMessage())
        except Exception:  # arguments that do not fit: the handler reports it, as logging does
            return True
        if key in self.seen and record.levelno < logging.ERROR:
            return False
        self.seen.add(key)
        return True


def _format_console(record: logging.LogRecord) -> str:
    message = record.getMessage()
    if record.name == "py.warnings":  # "path:line: Category: text\n  source": keep the first
        message = message.strip().splitlines()[0]
    if record.levelno >= logging.WARNING:
        return f"{record.levelname.lower()}: {message}"
    return message


class _ConsoleHandler(logging.Handler):
    """stderr, through rich's console on a terminal (lines print above a live progress
    display instead of being glued to it), plain text otherwise; ``sys.stderr`` is looked up
    at every record (test runners replace it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = _format_console(record)
            if record.exc_info and record.levelno >= logging.ERROR:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            if _stderr_is_terminal():
                from rich.text import Text

                style = "yellow" if record.levelno == logging.WARNING else None
                if record.levelno >= logging.ERROR:
                    style = "bold red"
                _console().print(Text(text, style=style or ""), soft_wrap=True)
            else:
                stream = sys.stderr
                stream.write(text + "\n")
                stream.flush()
        except Exception:
            self.handleError(record)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


_own_console: Any = None


@contextmanager
def kept_rich_console() -> Iterator[None]:
    """rich's global console as the caller had it, once the block ends (also on error):
    Lightning's RichProgressBar ``rich.reconfigure``s it for its bar (to stderr, as torchlap
    asks), which replaces every setting a caller gave it."""
    import rich

    console = rich.get_console()
    saved = dict(vars(console))
    try:
        yield
    finally:
        vars(console).clear()
        vars(console).update(saved)


# torchlap's training bars (Lightning's RichProgressBar): weak, so a finished run's bar goes
_training_bars: weakref.WeakSet[Any] = weakref.WeakSet()


def _console() -> Any:
    """The rich console torchlap prints to: the console of a torchlap training bar while its
    display runs and writes to stderr (Lightning's RichProgressBar, on rich's global console:
    log lines then print above its bar), else torchlap's own console on stderr. The global
    console is never reconfigured: ``rich.reconfigure`` replaced all of a caller's settings
    of it (its file, width, theme, recording) and sent their ``rich.print`` output to stderr
    for good. Only public attributes are read (the bar's ``progress``, rich's ``Progress.live``
    and ``Live.is_started``), not rich's private stack of live displays."""
    global _own_console
    from rich.console import Console

    for bar in list(_training_bars):
        progress = getattr(bar, "progress", None)
        if progress is not None and progress.live.is_started and progress.console.stderr:
            return progress.console
    if _own_console is None:
        _own_console = Console(stderr=True)
    return _own_console


def _remove_ours(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        if getattr(handler, _MARK, False) and not isinstance(handler, _RunLogHandler):
            logger.removeHandler(handler)
            handler.close()


def setup_logging(quiet: bool = False, verbose: bool = False) -> None:
    """The command line's logging (see the module docstring); safe to call again.

    ``quiet``: warnings and errors only, no progress. ``verbose``: torchlap's DEBUG lines and
    the INFO lines of Lightning and other libraries too. Python warnings go through logging
    (``py.warnings``), so they also reach the log file.
    """
    root = logging.getLogger()
    _remove_ours(root)
    console = _ConsoleHandler()
    setattr(console, _MARK, True)
    console.addFilter(_ConsoleFilter(verbose))
    console.setLevel(logging.WARNING if quiet else logging.DEBUG)
    root.addHandler(console)
    root.setLevel(logging.INFO)
    logging.getLogger("torchlap").setLevel(logging.DEBUG if verbose else logging.INFO)
    adopt_lightning_loggers()
    logging.captureWarnings(True)
    set_progress_mode("off" if quiet else "auto")


def adopt_lightning_loggers() -> None:
    """Route Lightning's loggers through torchlap's handlers, when :func:`setup_logging` set
    them up. Lightning adds its own stderr handlers when it is imported (``lightning`` with an
    ``INFO:`` prefix, ``lightning.pytorch`` without): every line would be printed twice, its
    device lines and tips shown. Called again once Lightning is imported (training)."""
    if not any(getattr(h, _MARK, False) for h in logging.getLogger().handlers):
        return
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True


class _RunLogHandler(logging.Handler):
    """Appends every record to ``path`` once ``ready()`` (records before are kept in memory,
    and dropped if the folder never becomes ready: a refused run leaves no file behind)."""

    def __init__(self, path: Path, ready: Callable[[], bool]) -> None:
        super().__init__(logging.DEBUG)
        self.path = path
        self.ready = ready
        self.pending: list[str] = []
        self.stream: Any = None
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.addFilter(_RankZero())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if self.stream is None:
                if not self.ready():
                    self.pending.append(text)
                    return
                self.stream = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
                for line in self.pending:
                    self.stream.write(line + "\n")
                self.pending.clear()
            self.stream.write(text + "\n")
            self.stream.flush()
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        if self.stream is None and self.pending and self.ready():  # the folder came last
            self.stream = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            self.stream.write("".join(line + "\n" for line in self.pending))
            self.pending.clear()
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        super().close()


@contextmanager
def log_file(
    path: str | os.PathLike[str], ready: Callable[[], bool] | None = None
) -> Iterator[Path]:
    """Append every log record (all loggers, INFO and up, DEBUG with ``-v``) to ``path`` while
    the block runs. ``ready()`` (default: the folder exists) says when torchlap may write
    there; records before are buffered. The file is appended to, never replaced."""
    path = Path(path)
    handler = _RunLogHandler(path, ready or path.parent.is_dir)
    setattr(handler, _MARK, True)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        handler.close()


# ------------------------------------------------------------------------------------------
# progress
_mode = "auto"


def set_progress_mode(mode: str) -> None:
    """``auto`` (rich on a terminal, plain lines otherwise), ``rich``, ``plain`` or ``off``."""
    global _mode
    if mode not in PROGRESS_MODES:
        raise ValueError(f"unknown progress mode {mode!r}; expected one of {PROGRESS_MODES}")
    _mode = mode


def progress_mode() -> str:
    """The progress display in effect now: ``rich``, ``plain`` or ``off`` (rank > 0: off)."""
    if _mode == "off" or process_rank() != 0:
        return "off"
    if _mode == "auto":
        return "rich" if _stderr_is_terminal() else "plain"
    return _mode


@dataclass
class _Task:
    description: str
    total: int | None
    unit: str
    done: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        text = f"{self.description}: {self.done}"
        if self.total:
            text += f"/{self.total}"
        text += f" {self.unit}, {_seconds(elapsed)}"
        if self.total and self.done:
            text += f", ETA {_seconds(elapsed / self.done * (self.total - self.done))}"
        return text


def _seconds(value: float) -> str:
    value = round(value)
    return f"{value // 60} min {value % 60:02d} s" if value >= 60 else f"{value} s"


class _Display:
    """The one live rich display of the process; nested :func:`track` calls add rows."""

    def __init__(self) -> None:
        self.progress: Any = None
        self.users = 0
        self.stack: list[_Task] = []  # plain mode: the active tasks, outermost first
        self.last_line = time.monotonic()

    def acquire(self) -> Any:
        if self.progress is None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[unit]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=_console(),
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            progress.start()
            self.progress = progress  # only once started: a failed start leaves none behind
        self.users += 1
        return self.progress

    def release(self) -> None:
        self.users -= 1
        if self.users <= 0 and self.progress is not None:
            self.progress.stop()
            self.progress = None
            self.users = 0


_display = _Display()


def track(
    iterable: Iterable[T],
    total: int | None = None,
    description: str = "",
    unit: str = "batches",
    describe: Callable[[T], str] | None = None,
) -> Iterator[T]:
    """Yield the items of ``iterable`` while showing progress (see :func:`progress_mode`).

    Nested calls (methods, then image batches, then mask batches) stack: rich shows one row
    each, the plain mode writes at most one line every :data:`PLAIN_INTERVAL_SECONDS`, naming
    the innermost step and its outer steps. ``describe(item)`` names the item being worked on
    (shown after ``description``).
    """

    def label(item: T) -> str:
        return f"{description} {describe(item)}" if describe is not None else description

    mode = progress_mode()
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if mode == "off":
        yield from iterable
        return
    if mode == "rich":
        progress = task = None
        try:  # the display stopped again whatever stops this (its start and the task's too)
            progress = _display.acquire()
            task = progress.add_task(description, total=total, unit=unit)
            for item in iterable:
                if describe is not None:
                    progress.update(task, description=label(item))
                yield item
                progress.advance(task)
        finally:
            if task is not None:
                progress.remove_task(task)
            if progress is not None:
                _display.release()
        return
    entry = _Task(description, total, unit)
    if not _display.stack:  # the first line comes PLAIN_INTERVAL_SECONDS after the start
        _display.last_line = time.monotonic()
    _display.stack.append(entry)
    try:
        for item in iterable:
            entry.description = label(item)
            yield item
            entry.done += 1
            now = time.monotonic()
            if now - _display.last_line >= PLAIN_INTERVAL_SECONDS:
                _display.last_line = now
                outer = [t for t in _display.stack if t is not entry]
                context = "; ".join(t.line() for t in outer)
                _progress_logger.info("%s%s", entry.line(), f" ({context})" if context else "")
    finally:
        _display.stack.remove(entry)


# ------------------------------------------------------------------------------------------
# training (Lightning)
def lightning_progress_callbacks(enabled: bool | None = None) -> tuple[list[Any], bool]:
    """Callbacks showing training progress, and the ``enable_progress_bar`` flag to give the
    Trainer: a rich bar counting epochs from 1 on a terminal, plain periodic lines
    otherwise, nothing when off. ``enabled`` (``--progress/--no-progress``) forces the bar on
    or off; ``None`` follows :func:`progress_mode`."""
    adopt_lightning_loggers()  # Lightning is imported by now
    mode = progress_mode()
    if enabled is False or mode == "off":
        return [], False
    if enabled is True and mode == "plain" and _mode == "auto":
        mode = "rich"
    if mode == "rich":
        return [_epoch_from_one_bar()], True
    return [_plain_training_progress()], False


def _epoch_from_one_bar() -> Any:
    from lightning.pytorch.callbacks import RichProgressBar

    class EpochFromOneBar(RichProgressBar):
        """Lightning's rich bar with epochs counted from 1 (as the log lines count them)."""

        def _get_train_description(self, current_epoch: int) -> str:
            text = f"epoch {current_epoch + 1}"
            if self.trainer.max_epochs is not None:
                text += f"/{self.trainer.max_epochs}"
            return f"{text:{len(self.validation_description)}}"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bar = EpochFromOneBar(console_kwargs={"stderr": True})
    _training_bars.add(bar)
    return bar


def _plain_training_progress() -> Any:
    from lightning.pytorch.callbacks import Callback

    class PlainTrainingProgress(Callback):
        """One line every PLAIN_INTERVAL_SECONDS during an epoch: batch, elapsed, ETA."""

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            total = trainer.num_training_batches
            total = int(total) if total not in (None, float("inf")) else None
            description = f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
            phase = getattr(pl_module, "phase_index", None)
            if isinstance(phase, int):  # torchlap's ClassifierModule: as its epoch lines say
                description = f"phase {phase + 1} {description}"
            self.task = _Task(description, total, "batches")
            self.last = time.monotonic()

        def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
            task = getattr(self, "task", None)
            if task is None:
                return
            task.done += 1
            now = time.monotonic()
            if now - self.last >= PLAIN_INTERVAL_SECONDS and process_rank() == 0:
                self.last = now
                _progress_logger.info("%s", task.line())

    return PlainTrainingProgress()
