"""Which launcher variables make a process a worker of a launch (``launcher_rank``) and the rank
``process_rank`` reads from them, or from Lightning's ``NODE_RANK`` + ``LOCAL_RANK``."""

from __future__ import annotations

import pytest

from torchlap import logs

_OTHERS = ("NODE_RANK", "LOCAL_RANK")


@pytest.fixture
def no_launcher(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for pair in logs.RANK_VARIABLES:
        for name in pair:
            monkeypatch.delenv(name, raising=False)
    for name in _OTHERS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, None),
        ({"RANK": "1", "WORLD_SIZE": "2"}, ("RANK", 1)),
        ({"RANK": "0", "WORLD_SIZE": "2"}, ("RANK", 0)),
        ({"RANK": "1", "WORLD_SIZE": "1"}, None),  # one process: no launch of several
        ({"RANK": "1", "WORLD_SIZE": "0"}, None),
        ({"RANK": "1", "WORLD_SIZE": "x"}, None),
        ({"RANK": "1"}, None),
        # an unreadable rank is skipped, the next launcher's variables answer
        ({"RANK": "x", "WORLD_SIZE": "2", "SLURM_PROCID": "3", "SLURM_NTASKS": "4"},
         ("SLURM_PROCID", 3)),
        ({"PMI_RANK": "2", "PMI_SIZE": "3"}, ("PMI_RANK", 2)),
        ({"OMPI_COMM_WORLD_RANK": "5", "OMPI_COMM_WORLD_SIZE": "8"}, ("OMPI_COMM_WORLD_RANK", 5)),
        ({"RANK": "1", "WORLD_SIZE": "2", "SLURM_PROCID": "3", "SLURM_NTASKS": "4"}, ("RANK", 1)),
    ],
)  # fmt: skip
def test_launcher_rank(
    no_launcher: pytest.MonkeyPatch, variables: dict[str, str], expected: object
) -> None:
    for name, value in variables.items():
        no_launcher.setenv(name, value)
    assert logs.launcher_rank() == expected


@pytest.mark.parametrize(
    ("variables", "rank"),
    [
        ({}, 0),
        ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "NODE_RANK": "1"}, 3),
        ({"RANK": "3", "WORLD_SIZE": "1", "LOCAL_RANK": "1"}, 1),
        ({"NODE_RANK": "2", "LOCAL_RANK": "3"}, 5),
        ({"NODE_RANK": "x", "LOCAL_RANK": "1"}, 1),
        ({"NODE_RANK": "2", "LOCAL_RANK": "y"}, 2),
    ],
)
def test_process_rank(
    no_launcher: pytest.MonkeyPatch, variables: dict[str, str], rank: int
) -> None:
    for name, value in variables.items():
        no_launcher.setenv(name, value)
    assert logs.process_rank() == rank
