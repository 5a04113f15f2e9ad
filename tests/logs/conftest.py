"""Fixtures of the logging tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from torchlap import logs


@pytest.fixture
def rich_mode() -> Iterator[None]:
    """Progress shown with rich for the test, the default mode (``auto``) afterwards."""
    logs.set_progress_mode("rich")
    try:
        yield
    finally:
        logs.set_progress_mode("auto")
