"""Time every explainer on one LAP-ResNet18 in the same run (``torchlap bench explain``).

Run: ``.venv/bin/python benchmarks/bench_explain.py`` with the options of
``torchlap bench explain --help`` (e.g. ``--sizes 64 --rise-masks 500``). Prints seconds per
batch, images/second, the time relative to ``lap``, and the model passes per image of each method.
"""

from __future__ import annotations

import logging
import sys

import typer

from torchlap.bench.explain import register_bench


def main(argv: list[str] | None = None) -> None:
    """Run the ``explain`` benchmark with command-line options ``argv`` (default: sys.argv)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    app = typer.Typer(add_completion=False)

    @app.callback()
    def _root() -> None:
        """torchlap explainer benchmark."""

    register_bench(app)
    app(["explain", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
