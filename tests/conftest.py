"""Shared test settings: small thread count, deterministic seeds, and one temporary folder
for the files the tests make with ``tempfile``, removed when the run ends."""

import shutil
import tempfile

import pytest
import torch

# tiny test models run fastest on one thread (and the suite shares the machine)
torch.set_num_threads(1)

_saved_tempdir: list[str | None] = []


def pytest_configure(config: pytest.Config) -> None:
    """Before collection (the API fuzzer makes files while its cases are collected): every
    folder made with ``tempfile`` goes into one folder of this run. Before, the API fuzzer's
    and the README refusal cases' folders stayed in the system's temporary directory, about
    1,400 per ``make test``. pytest's ``tmp_path`` folders land there too unless
    ``--basetemp DIR`` is given (then they stay in DIR, to inspect a failure)."""
    _saved_tempdir.append(tempfile.tempdir)
    tempfile.tempdir = tempfile.mkdtemp(prefix="torchlap-tests-")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove this run's temporary folder and give ``tempfile`` its directory back."""
    if _saved_tempdir:
        ours, tempfile.tempdir = tempfile.tempdir, _saved_tempdir.pop()
        if ours is not None:
            shutil.rmtree(ours, ignore_errors=True)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
