"""``run_model`` (every perturbation metric's forwards) checks the logits of all its chunks
with one host read, not one per chunk (a read per chunk waits for the device each time), and
still names the images whose logits are not finite."""

from __future__ import annotations

import pytest
import torch

from torchlap.metrics._common import run_model


class _Reads(torch.Tensor):
    """Logits that count the host reads of anything computed from them (``bool``)."""

    reads = 0

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func is torch.Tensor.__bool__:
            cls.reads += 1
        return super().__torch_function__(func, types, args, kwargs or {})


def test_one_host_read_for_every_chunk() -> None:
    images = torch.randn(10, 3)
    weight = torch.randn(3, 4)

    def model(x: torch.Tensor) -> torch.Tensor:
        return (x @ weight).as_subclass(_Reads)

    _Reads.reads = 0
    logits = run_model(model, 10, lambda chunk: images[chunk], batch_size=3)
    torch.testing.assert_close(logits.as_subclass(torch.Tensor), images @ weight)
    assert _Reads.reads == 1  # four chunks


def test_non_finite_logits_still_name_their_images() -> None:
    images = torch.randn(10, 3)
    images[[2, 7]] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or infinite logits for images \[2, 7\]"):
        run_model(lambda x: x * 2, 10, lambda chunk: images[chunk], batch_size=3)
    with pytest.raises(ValueError, match=r"for images \[12, 17\]"):
        run_model(
            lambda x: x * 2, 10, lambda chunk: images[chunk], batch_size=4,
            image_of=torch.arange(10, 20),
        )  # fmt: skip
