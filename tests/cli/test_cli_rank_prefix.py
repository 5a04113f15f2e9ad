"""Which process of a sharded command prints its own error, and under which name: rank 0 (or
the only process) prints a bare Error line; another names itself by the launcher's global
rank, or by node and local rank when Lightning's launcher on several nodes gives only those;
a peer's dropped connection is recognised as the echo of another rank's failure."""

from __future__ import annotations

import pytest
import torch.distributed

from torchlap.cli import _other_rank, _peer_gone
from torchlap.logs import RANK_VARIABLES


@pytest.fixture
def no_launcher(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The environment of a process no launcher started."""
    for pair in RANK_VARIABLES:
        for name in pair:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("NODE_RANK", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, None),
        ({"RANK": "0", "WORLD_SIZE": "2"}, None),
        ({"RANK": "1", "WORLD_SIZE": "2"}, "rank 1"),
        ({"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "LOCAL_RANK": "1"}, "rank 3"),
        ({"LOCAL_RANK": "1"}, "rank 1"),
        ({"NODE_RANK": "0", "LOCAL_RANK": "2"}, "rank 2"),
        ({"NODE_RANK": "", "LOCAL_RANK": "1"}, "rank 1"),
        ({"NODE_RANK": "1"}, "node 1 local rank 0"),
        ({"NODE_RANK": "1", "LOCAL_RANK": "0"}, "node 1 local rank 0"),
        ({"NODE_RANK": "2", "LOCAL_RANK": "3"}, "node 2 local rank 3"),
    ],
)
def test_a_process_other_than_rank_zero_names_itself(
    no_launcher: pytest.MonkeyPatch, variables: dict[str, str], expected: str | None
) -> None:
    for name, value in variables.items():
        no_launcher.setenv(name, value)
    assert _other_rank() == expected


def test_a_dropped_peer_is_told_from_a_failure_of_this_process() -> None:
    assert _peer_gone(RuntimeError("[gloo] Connection closed by peer [127.0.0.1]:29500"))
    assert not _peer_gone(RuntimeError("out of memory"))
    assert not _peer_gone(ValueError("bad value"))
    if hasattr(torch.distributed, "DistError"):
        assert _peer_gone(torch.distributed.DistError("store timeout"))
