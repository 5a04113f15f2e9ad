"""The exported module's maps: those of the *predicted* class (on a multi-class run, whose
LAP maps differ between classes), at the input's own height and width (a non-square input)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from torchlap import explain
from torchlap.export import LapExportModule
from torchlap.runs import load_run


@pytest.fixture(scope="module")
def concepts_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch LAP run on the 4-class concepts benchmark."""
    from torchlap.train import TrainConfig, fit

    out = tmp_path_factory.mktemp("export_concepts") / "run"
    config = TrainConfig(
        data="concepts", out=str(out), arch="smallcnn", epochs=1, n_images=40, image_size=32,
        batch_size=16, progress_bar=False,
    )  # fmt: skip
    return fit(config)


def _logits_and_export(run, images: torch.Tensor) -> tuple[torch.Tensor, tuple]:
    """The run's logits on ``images`` and the outputs of its exported module."""
    module = LapExportModule(run.model, run.concept_sets)
    with torch.no_grad():
        return run.model(images), module(images)


def test_exported_maps_follow_the_predicted_class(concepts_run: Path) -> None:
    """Per image, lap_all equals explain(..., target=argmax), and the test can tell the
    predicted class's map from another class's."""
    run = load_run(concepts_run)
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    logits, outputs = _logits_and_export(run, images)
    predicted = logits.argmax(dim=1)
    torch.testing.assert_close(outputs[0], logits)
    differs = False
    for i in range(len(images)):
        image, sets = images[i : i + 1], run.concept_sets
        mine = explain(run.model, image, "lap", target=predicted[i : i + 1], concept_sets=sets)
        torch.testing.assert_close(outputs[-1][i], mine[0], atol=1e-5, rtol=1e-5)
        for other in range(logits.shape[1]):
            if other != int(predicted[i]):
                theirs = explain(
                    run.model, image, "lap", target=torch.tensor([other]), concept_sets=sets
                )
                differs = differs or float((mine - theirs).abs().max()) > 1e-4
    assert differs  # otherwise the check above could not see a wrong class


def test_lap_all_has_the_input_height_and_width(concepts_run: Path) -> None:
    """A 32 x 48 input gives lap_all of 32 x 48, equal to the lap explainer's map."""
    run = load_run(concepts_run)
    images = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(2))
    logits, outputs = _logits_and_export(run, images)
    assert outputs[-1].shape == (2, 32, 48)
    reference = explain(
        run.model, images, "lap", target=logits.argmax(dim=1), concept_sets=run.concept_sets
    )
    torch.testing.assert_close(outputs[-1], reference, atol=1e-5, rtol=1e-5)


def test_lap_all_takes_the_modules_decay_and_threshold(concepts_run: Path) -> None:
    """LAP All of the export follows its ``decay``/``threshold``: on maps made non-flat (the
    concept heads' last weights drawn at random; a one-epoch run's maps sit near 0.5), the
    module at (0.5, 0.3) equals the ``lap`` explainer at (0.5, 0.3) and differs from (0.8, 0.5)."""
    from torchlap.layers import lap_modules

    run = load_run(concepts_run)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for layer in lap_modules(run.model).values():
            last = layer.scorer.heads[-1]
            last.weight.copy_(torch.randn(last.weight.shape, generator=generator) * 3)
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    sets = run.concept_sets
    chosen = LapExportModule(run.model, sets, decay=0.5, threshold=0.3)
    default = LapExportModule(run.model, sets)
    with torch.no_grad():
        predicted = run.model(images).argmax(dim=1)
        mine, theirs = chosen(images)[-1], default(images)[-1]
    expected = explain(
        run.model, images, "lap", target=predicted, concept_sets=sets, decay=0.5, threshold=0.3
    )
    torch.testing.assert_close(mine, expected, atol=1e-5, rtol=1e-5)
    assert float((mine - theirs).abs().max()) > 1e-3  # the options change the map here
