"""The reads of a folder dataset, counted: which image and mask headers the folder loader
opens and which ``annotations.csv`` it parses (for the tests that check each is read once)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import torchlap.data.folder as folder


def count_folder_reads(monkeypatch: pytest.MonkeyPatch) -> tuple[Counter, Counter]:
    """``(headers, parses)``: from now on, the image and mask headers opened and the CSVs
    parsed by :mod:`torchlap.data.folder`, each a ``Counter`` by path."""
    headers: Counter = Counter()
    parses: Counter = Counter()
    header, read = folder.image_header, folder.read_annotations

    def counted_header(path: Any, *args: Any, **kwargs: Any) -> Any:
        headers[Path(path)] += 1
        return header(path, *args, **kwargs)

    def counted_read(path: Any, *args: Any, **kwargs: Any) -> Any:
        parses[Path(path)] += 1
        return read(path, *args, **kwargs)

    monkeypatch.setattr(folder, "image_header", counted_header)
    monkeypatch.setattr(folder, "read_annotations", counted_read)
    return headers, parses
