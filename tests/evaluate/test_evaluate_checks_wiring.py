"""``run_checks`` on a tiny two-class model with a recording explainer: the images, classes and
options the sanity check gets, its per-method cache, and the grid pointing game's scores
against a slow reference (grids tiled here from the recorded cell sources; score = the share of
the map's positive attribution inside the explained cell, Böhle et al. 2022)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import torchlap.evaluate.checks as checks
import torchlap.report.sanity as report_sanity
from torchlap.evaluate import EvalData, EvaluateOptions
from torchlap.evaluate.sanity import sanity_check

SIDE = 6


class TwoClassNet(nn.Module):
    """Class 1 when the mean of channel 0 is above 0.5 (every test image is classified right)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            self.conv.weight[0, 0, 1, 1] = 1.0
            self.fc.weight.zero_()
            self.fc.weight[0, 0], self.fc.weight[1, 0] = -1.0, 1.0
            self.fc.bias.copy_(torch.tensor([0.5, -0.5]))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def fake_map(model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
    """Signed maps that depend on the weights, the image and the class explained."""
    weight = model.conv.weight.detach()[:, :, 1, 1]  # (4, C)
    per_class = weight[targets.long() + 1]  # (N, C)
    sign = targets.view(-1, 1, 1).float() * 2 - 1
    return torch.einsum("nchw,nc->nhw", images, per_class) + images[:, 0] * sign - 0.1


def _data(n: int = 8) -> EvalData:
    generator = torch.Generator().manual_seed(5)
    labels = torch.arange(n) % 2
    images = torch.rand(n, 3, SIDE, SIDE, generator=generator)
    images[:, 0] = images[:, 0] * 0.4 + 0.6 * labels.view(-1, 1, 1)  # class 1: 0.6 .. 1.0
    return EvalData(images, labels, torch.zeros(n, SIDE, SIDE, dtype=torch.bool),
                    torch.zeros(n, dtype=torch.bool), ["a", "b"], "two")  # fmt: skip


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Tensor, Tensor]] = []

    def __call__(self, model: nn.Module, images: Tensor, targets: Tensor, *_a: Any) -> Tensor:
        self.calls.append((images.clone(), targets.clone()))
        return fake_map(model, images, targets)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(checks, "explain_all", recorder)
    return recorder


def _options(**fields: Any) -> EvaluateOptions:
    base = dict(methods=("gradcam",), sanity=True, sanity_images=3, grid_pg=True,
                grid_pg_grids=5, grid_pg_confidence=0.6, batch_size=4, seed=1)  # fmt: skip
    return EvaluateOptions(**{**base, **fields})


def _run(test: EvalData, options: EvaluateOptions, out: Path, force: bool = False) -> dict:
    """``run_checks`` with ``force`` left at its default (the caches read) unless set."""
    forced = {"force": True} if force else {}
    return checks.run_checks(
        TwoClassNet().eval(), test, test.labels.flip(0), options, options.methods,
        lambda _m: {}, out, {"weights": "w"}, "two", **forced,
    )  # fmt: skip


def test_the_sanity_check_explains_the_first_images_for_the_given_targets(recorder, tmp_path):
    test, options = _data(), _options(grid_pg=False, sanity_modes=("cascading",))
    started = time.perf_counter()
    entry = _run(test, options, tmp_path)["sanity"]["gradcam"]
    elapsed = time.perf_counter() - started
    targets = test.labels.flip(0)[:3]
    assert recorder.calls, "the sanity check explained nothing"
    for images, explained in recorder.calls:
        assert torch.equal(images, test.images[:3]) and torch.equal(explained, targets)
    assert 0.0 <= entry.pop("seconds") <= elapsed
    expected = sanity_check(TwoClassNet().eval(), test.images[:3], targets, fake_map,
                            modes=("cascading",), threshold=0.5, seed=1)  # fmt: skip
    assert entry == expected
    assert entry["n_images"] == 3


def test_the_sanity_cache_is_read_back_unless_forced(recorder, tmp_path):
    test, options = _data(), _options(grid_pg=False, sanity_modes=("cascading",))
    first = _run(test, options, tmp_path)["sanity"]["gradcam"]
    assert (tmp_path / "methods" / "sanity_gradcam.json").is_file()
    calls = len(recorder.calls)
    again = _run(test, options, tmp_path)["sanity"]["gradcam"]
    assert len(recorder.calls) == calls and again == first  # read from the cache
    other = _run(test, _options(grid_pg=False, sanity_modes=("cascading",), sanity_images=2),
                 tmp_path)["sanity"]["gradcam"]  # fmt: skip
    assert len(recorder.calls) > calls and other["n_images"] == 2  # another key: recomputed
    calls = len(recorder.calls)
    _run(test, options, tmp_path, force=True)
    assert len(recorder.calls) > calls


def _reference_scores(test: EvalData, setup: dict) -> list[float]:
    """Each grid tiled from its cell sources, explained for each cell's class; the positive
    attribution inside that cell over the map's positive attribution (loops over pixels)."""
    rows, cols = setup["shape"]
    scores = []
    model = TwoClassNet().eval()
    for sources, classes in zip(setup["cell_sources"], setup["cell_classes"], strict=True):
        grid = torch.zeros(3, rows * SIDE, cols * SIDE)
        for k, source in enumerate(sources):
            assert int(test.labels[source]) == classes[k]
            r, c = divmod(k, cols)
            grid[:, r * SIDE : (r + 1) * SIDE, c * SIDE : (c + 1) * SIDE] = test.images[source]
        for k, target in enumerate(classes):
            m = fake_map(model, grid[None], torch.tensor([target]))[0]
            inside = total = 0.0
            for y in range(m.shape[0]):
                for x in range(m.shape[1]):
                    positive = max(float(m[y, x]), 0.0)
                    total += positive
                    if (y // SIDE) * cols + x // SIDE == k:
                        inside += positive
            scores.append(inside / total if total > 0 else 1.0 / (rows * cols))
    return scores


def test_grid_pointing_scores_match_a_slow_reference(recorder, tmp_path, monkeypatch):
    figures: list[dict] = []

    def plot(grids, explained, shape, maps, names, path, facts, *, overwrite=False):
        figures.append(dict(grids=grids, explained=explained, shape=shape, maps=dict(maps),
                            names=names, path=Path(path), overwrite=overwrite))  # fmt: skip

    monkeypatch.setattr(report_sanity, "plot_grid_examples", plot)
    test = _data()
    results = _run(test, _options(sanity=False), tmp_path)
    setup, game = results["grid_pointing_setup"], results["grid_pointing_game"]["gradcam"]
    assert setup["shape"] == [1, 2] and setup["n_grids"] == 5
    assert setup["cell_size"] == [SIDE, SIDE] and setup["min_confidence"] == 0.6
    expected = _reference_scores(test, setup)
    assert game["n"] == len(expected) == 10
    scores = torch.tensor(game["scores"], dtype=torch.float64)
    torch.testing.assert_close(
        scores, torch.tensor(expected, dtype=torch.float64), atol=1e-6, rtol=0
    )
    assert game["mean"] == pytest.approx(sum(expected) / len(expected), abs=1e-6)
    cached = json.loads((tmp_path / "methods" / "grid_pg_gradcam.json").read_text())
    assert cached["results"] == game
    # the figure: the first three grids, each explained for the class of its cell 0, computed
    # then read back from the cache (the maps of the game itself not computed again)
    calls = len(recorder.calls)
    again = _run(test, _options(sanity=False), tmp_path)
    assert again["grid_pointing_game"]["gradcam"] == game
    assert [len(images) for images, _ in recorder.calls[calls:]] == [3]
    assert len(figures) == 2
    classes = torch.tensor(setup["cell_classes"])[:3, 0]
    for figure in figures:
        assert figure["shape"] == (1, 2) and figure["names"] == ["a", "b"]
        assert figure["path"] == tmp_path / "figures" / "grid_pg_examples.png"
        assert figure["overwrite"] is True and figure["grids"].shape == (3, 3, SIDE, 2 * SIDE)
        assert torch.equal(figure["explained"], classes)
        torch.testing.assert_close(
            figure["maps"]["gradcam"], fake_map(TwoClassNet(), figure["grids"], classes)
        )


def test_a_game_without_enough_confident_classes_is_skipped_and_said(recorder, tmp_path, caplog):
    test = _data()
    with caplog.at_level("WARNING", logger="torchlap.evaluate.checks"):
        results = _run(test, _options(sanity=False, grid_pg_confidence=0.99), tmp_path)
    assert results["grid_pointing_game"] == {} and not recorder.calls
    reason = results["grid_pointing_setup"]["skipped"]
    assert "a 1x2 grid needs 2 classes with a correctly and confidently (p >= 0.99)" in reason
    assert f"grid pointing game skipped: {reason}" in caplog.text


def test_the_figure_is_left_to_rank_zero_and_its_failure_keeps_the_numbers(
    recorder, tmp_path, monkeypatch, caplog
):
    drawn: list[Path] = []

    def plot(*args, **kwargs):
        drawn.append(Path(args[5]))
        raise OSError("disk full")

    monkeypatch.setattr(report_sanity, "plot_grid_examples", plot)
    monkeypatch.setattr(checks, "is_writer", lambda: False)  # another rank of a sharded run
    first = _run(_data(), _options(sanity=False), tmp_path / "a")
    assert not drawn and first["grid_pointing_game"]["gradcam"]["n"] == 10
    monkeypatch.setattr(checks, "is_writer", lambda: True)
    with caplog.at_level("WARNING", logger="torchlap.evaluate.checks"):
        second = _run(_data(), _options(sanity=False), tmp_path / "b")
    assert drawn == [tmp_path / "b" / "figures" / "grid_pg_examples.png"]
    assert "grid pointing game figure not written: disk full" in caplog.text
    assert second["grid_pointing_game"] == first["grid_pointing_game"]
