"""What every ``torchlap`` command shares: ``-q/--quiet`` and ``-v/--verbose`` (one logging
setup, :func:`torchlap.logs.setup_logging`), and flags shown without a ``<bool>`` type.

:func:`decorate_commands` walks the click command tree that typer builds from the app, so a
command registered by any area gets the same options without declaring them.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from torchlap.io import fitting_path
from torchlap.logs import setup_logging

__all__ = [
    "OUTPUT_PANEL",
    "PANELS",
    "decorate_commands",
    "given_options",
    "key_values",
    "listed_names",
    "nonblank_path",
]

#: the help panel of the options every command shares
OUTPUT_PANEL = "Output"
_QUIET, _VERBOSE = "torchlap.quiet", "torchlap.verbose"


def _apply(ctx: typer.Context) -> None:
    setup_logging(quiet=bool(ctx.meta.get(_QUIET)), verbose=bool(ctx.meta.get(_VERBOSE)))


def _quiet_callback(ctx: typer.Context, value: bool) -> None:
    if value:
        ctx.meta[_QUIET] = True
    _apply(ctx)


def _verbose_callback(ctx: typer.Context, value: bool) -> None:
    if value:
        ctx.meta[_VERBOSE] = True
    _apply(ctx)


def _verbosity_options() -> list[Any]:
    """The two options as typer builds them (taken from a one-command app)."""
    holder = typer.Typer(add_completion=False)

    @holder.command()
    def _options(
        quiet: bool = typer.Option(
            False, "-q", "--quiet", callback=_quiet_callback, is_eager=True, expose_value=False,
            help="Warnings and errors only; no progress display.", rich_help_panel=OUTPUT_PANEL,
        ),
        verbose: bool = typer.Option(
            False, "-v", "--verbose", callback=_verbose_callback, is_eager=True,
            expose_value=False, rich_help_panel=OUTPUT_PANEL,
            help="Also debug lines and the INFO lines of Lightning and other libraries.",
        ),
    ) -> None:  # fmt: skip
        """Only a holder of the options."""

    return list(typer.main.get_command(holder).params)


_EVALUATE_PANELS = {
    "Inputs and outputs": ("run", "data", "split", "out", "force"),
    "Methods": ("methods", "method_options", "target", "batch_size", "device", "seed"),
    "Sizes (cost)": ("max_images", "max_val_images", "stability_images", "lime_images"),
    "LIME check (paper 002, BLA runs)": ("lime_option", "lime_baseline"),
    "Protocol": ("baseline", "threshold_fit", "threshold_classifier", "ties", "tie_draws",
                 "lap_all_ranking", "bootstrap_resamples", "bootstrap_level"),
    "Extra checks": ("sanity", "sanity_images", "sanity_threshold", "grid_pg", "grid_pg_shape",
                     "grid_pg_grids", "grid_pg_confidence"),
}  # fmt: skip
#: command -> help panel -> option names (options not listed stay under "Options")
PANELS: dict[str, dict[str, tuple[str, ...]]] = {
    "train": {
        "Data": ("data", "image_size", "n_images", "data_option", "batch_size", "num_workers"),
        "Model": ("arch", "lap", "model", "pretrained", "n_concepts", "concept_sets"),
        "Knowledge injection": ("supervision", "min_ar", "max_ar", "iar", "no_discriminative",
                                "common_head_sets", "loss_weight"),
        "Schedule": ("epochs", "lr", "optimizer", "weight_decay", "schedule", "phase", "seed"),
        "Hardware": ("devices", "num_nodes", "strategy", "accelerator", "precision"),
        "Run folder": ("out", "overwrite", "resume", "checkpoint_every_n_steps", "progress_bar"),
    },
    "evaluate": _EVALUATE_PANELS,
    "compare": _EVALUATE_PANELS,
    "demo": {
        "What runs": ("suite", "data", "arch", "epochs", "lr", "scale"),
        "Output": ("out", "overwrite"),
    },
}  # fmt: skip


def _group_options(command: Any, name: str) -> None:
    for panel, names in PANELS.get(name, {}).items():
        for param in command.params:
            if param.name in names and getattr(param, "rich_help_panel", "") is None:
                param.rich_help_panel = panel


def _without_bool(option: Any) -> Any:
    if option is not None and getattr(option, "is_flag", False) and option.metavar is None:
        option.metavar = ""  # typer shows "<bool>" after a flag otherwise
    return option


def decorate_commands(command: Any, _options: list[Any] | None = None, name: str = "") -> None:
    """Add ``-q``/``-v`` to ``command`` and every sub-command (once), group options into help
    panels (:data:`PANELS`), and hide ``<bool>``."""
    options = _options if _options is not None else _verbosity_options()
    _group_options(command, name)
    names = {name for param in command.params for name in getattr(param, "opts", ())}
    if "--quiet" not in names and "-q" not in names:
        command.params.extend(options)
    for param in command.params:
        _without_bool(param)
    if not getattr(command, "_torchlap_help_patched", False):
        original = command.get_help_option
        command.get_help_option = lambda ctx, _original=original: _without_bool(_original(ctx))
        command._torchlap_help_patched = True
    for sub_name, sub in getattr(command, "commands", {}).items():
        decorate_commands(sub, options, sub_name)


def key_values(items: list[str] | None, option: str, parse: bool = True) -> dict[str, Any]:
    """A repeatable ``KEY=VALUE`` option as a dict: ``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``
    (each value parsed as JSON when it is JSON, else kept as its string; every value a string
    without ``parse``). ``ValueError`` naming ``option`` for an item without ``=`` or a key, or
    a key given twice."""
    result: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{option} expects KEY=VALUE, got {item!r}")
        if key.strip() in result:
            raise ValueError(f"{option} {key.strip()} is given twice; give each key once")
        try:
            result[key.strip()] = json.loads(raw) if parse else raw
        except (json.JSONDecodeError, RecursionError):  # not JSON (or too deep): the text
            result[key.strip()] = raw
    return result


def given_options(context: object) -> set[str]:
    """The names of the options the user set (on the command line or through the environment),
    not left at their defaults, from a command's click context (typer releases differ in which
    click they use, the installed one or a copy of their own, so the parameter source is read
    by name); an empty set for a command called as a Python function."""
    source_of = getattr(context, "get_parameter_source", None)
    if source_of is None:
        return set()
    given = set()
    for name in getattr(context, "params", {}):
        source = source_of(name)
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            given.add(name)
    return given


def nonblank_path(text: str, option: str, accepted: str = "the output folder") -> str:
    """``text`` of a path option, refused (``ValueError`` naming ``option``) when it is empty or
    blank: as a path it is the current folder, which the command would read or fill (an unset
    shell variable, ``--out "$OUT"``, not a request; ``.`` says it)."""
    if not text.strip():
        raise ValueError(f"{option} is empty or blank; pass {accepted} (. for the current folder)")
    return fitting_path(text, option)


def listed_names(text: str, option: str) -> list[str]:
    """The comma-separated names of a list option, stripped (``"lap, gradcam"`` ->
    ``["lap", "gradcam"]``); ``[]`` when ``text`` names nothing (``""``, ``","``: the caller
    says what it needs). ``ValueError`` naming ``option`` for an empty name between or after
    others (``"gradcam,,lap"``, ``"gradcam,"``): a name left out, e.g. an unset shell variable,
    that was skipped without a word."""
    names = [name.strip() for name in text.split(",")]
    if not any(names):
        return []
    if not all(names):
        raise ValueError(
            f"{option} {text!r} has an empty name (two commas in a row, or one at an end); "
            "separate the names with single commas, e.g. lap,gradcam"
        )
    return names
