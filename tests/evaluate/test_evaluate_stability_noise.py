"""The evaluation's stability noise is seeded per image: an image's noisy copies (one per noise
level) are the same whatever ``--stability-images`` and ``--batch-size`` say, i.e. whichever
other images are noised with it, and follow ``--seed``."""

from __future__ import annotations

import torch
from synthetic_eval import recording, split
from torch import nn

from torchlap.evaluate.core import (
    EvaluateOptions,
    evaluate_method,
    evaluate_run,
    protocol,
)


def noisy_copies(monkeypatch, stability_images, batch_size, seed=0):
    """The noisy images of every level in an evaluation of gradcam, ``(levels, n, C, H, W)``."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 12 * 12, 3)).eval()  # fmt: skip
    test, val = split(6, 0), split(4, 1)
    with monkeypatch.context() as patch:
        noised = recording(patch)
        options = EvaluateOptions(
        methods=("gradcam",), stability_images=stability_images, batch_size=batch_size,
        stability_fractions=(0.2, 0.4), ks=(50,), tie_draws=1, seed=seed,
        )  # fmt: skip
        evaluate_method(
            "gradcam", model, test, val, test.labels, val.labels, options, torch.device("cpu")
        )
    return torch.stack(noised)


def test_an_images_noisy_copy_does_not_depend_on_the_stability_subset(monkeypatch):
    one = noisy_copies(monkeypatch, stability_images=1, batch_size=4)
    four = noisy_copies(monkeypatch, stability_images=4, batch_size=4)
    six = noisy_copies(monkeypatch, stability_images=6, batch_size=1)
    assert one.shape[:2] == (2, 1) and four.shape[:2] == (2, 4) and six.shape[:2] == (2, 6)
    assert torch.equal(one[:, 0], four[:, 0])  # alone, then first of four
    assert torch.equal(four, six[:, :4])  # in batches of 4 or of 1, the last of a subset or not
    assert not torch.equal(six[0], six[1])  # each level its own noise
    other_seed = noisy_copies(monkeypatch, stability_images=1, batch_size=4, seed=1)
    assert not torch.equal(other_seed, one)  # --seed seeds it


def test_the_protocol_records_how_the_noise_is_seeded():
    recorded = protocol(EvaluateOptions(seed=7))["stability_noise"]
    assert "seeded per image (seed 7)" in recorded and "index" in recorded


def test_a_trained_runs_evaluation_noises_an_image_alike_in_any_subset(lap_run, tmp_path,
                                                                       monkeypatch):  # fmt: skip
    copies = {}
    for count in (1, 4):
        options = EvaluateOptions(
            methods=("gradcam",), max_images=6, max_val_images=8, stability_images=count,
            stability_fractions=(0.3,), batch_size=3, ks=(50,), tie_draws=1,
        )  # fmt: skip
        with monkeypatch.context() as patch:
            noised = recording(patch)
            evaluate_run(lap_run, out=tmp_path / str(count), options=options, write_report=False)
        (copies[count],) = noised
    assert copies[1].shape[0] == 1 and copies[4].shape[0] == 4
    assert torch.equal(copies[1][0], copies[4][0])
