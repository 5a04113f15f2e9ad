"""The plumbing every report figure shares: the checked ``.png`` path, a pyplot-free Agg
figure, user text drawn literally, and the atomic save with torchlap's PNG mark (which tells a
figure torchlap wrote, so that only those are replaced without ``overwrite``)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import FixedFormatter, FuncFormatter
from PIL import Image, UnidentifiedImageError

from torchlap.io import atomic_write

__all__ = ["PNG_SOFTWARE", "is_torchlap_figure"]

_DPI = 110


def _png_path(path: object, overwrite: object = False) -> Path:
    """``path`` checked before any drawing: a ``.png`` path where a figure may be written (no
    folder there, and a file only if torchlap wrote it, see :func:`is_torchlap_figure`, or
    ``overwrite`` is True)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike ending in .png, got {type(path)}")
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be True or False, got {overwrite!r}")
    target = Path(path)
    if target.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png (figures are written as PNG), got {str(path)!r}")
    if target.is_dir():
        raise IsADirectoryError(f"{target} is a folder; pass the path of the PNG file to write")
    if (
        (target.exists() or target.is_symlink())
        and not overwrite
        and not is_torchlap_figure(target)
    ):
        raise FileExistsError(
            f"{target} exists and is not a figure torchlap wrote; pass overwrite=True to "
            "replace it, or another path"
        )
    return target


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _literal_text(figure: Figure) -> None:
    """Draw every text torchlap set (titles, labels, legends, named ticks) literally.

    Class, run and method names are user text: a ``$`` in them must not start matplotlib's
    mathtext (``$x^$`` fails to parse after all the work) nor go through LaTeX when the user's
    rcParams set ``text.usetex``. Texts that matplotlib's own formatters generate (numeric
    ticks, offset texts) keep the user's settings; named ticks (``set_ticklabels`` installs a
    FuncFormatter, or a FixedFormatter) are user text. Per text object, so thread-safe.
    """
    generated: set[int] = set()
    for axes in figure.axes:
        for axis in (axes.xaxis, axes.yaxis):
            generated.add(id(axis.offsetText))
            named = isinstance(axis.get_major_formatter(), (FixedFormatter, FuncFormatter))
            for tick in (*([] if named else axis.get_major_ticks()), *axis.get_minor_ticks()):
                generated.update((id(tick.label1), id(tick.label2)))
    for text in figure.findobj(Text):
        if id(text) not in generated:
            text.set_usetex(False)
            text.set_parse_math(False)


#: the PNG "Software" text of every figure torchlap writes (explain tells its own files by it)
PNG_SOFTWARE = "torchlap"


def is_torchlap_figure(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a PNG torchlap wrote: its ``Software`` text starts with
    :data:`PNG_SOFTWARE` (every figure of this module carries it). False for anything else,
    unreadable files included."""
    try:
        with Image.open(path) as image:
            return str(getattr(image, "text", {}).get("Software", "")).startswith(PNG_SOFTWARE)
    except (OSError, UnidentifiedImageError, ValueError):
        return False


def _save(figure: Figure, path: Path, overwrite: bool = False) -> Path:
    """Write ``figure`` as PNG to ``path`` atomically (temp file in the folder + os.replace);
    without ``overwrite`` only a figure torchlap wrote is replaced: a file that appeared at
    ``path`` while the figure was drawn is left as it is (FileExistsError).

    All text torchlap set is drawn literally first (see :func:`_literal_text`).
    """
    _literal_text(figure)
    metadata = {"Software": f"{PNG_SOFTWARE} (matplotlib {matplotlib.__version__})"}
    write = lambda handle: figure.savefig(handle, format="png", metadata=metadata)  # noqa: E731
    return atomic_write(path, write, replace=overwrite or is_torchlap_figure(path))
