"""Shared test settings: small thread count and deterministic seeds."""

import pytest
import torch

# tiny test models run fastest on one thread (and the suite shares the machine)
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
