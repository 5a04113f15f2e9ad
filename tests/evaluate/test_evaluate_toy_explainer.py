"""Adding an explainer is its class and its registration: a toy method registered here (and
nowhere else) shows up in ``evaluate`` (results.json), the report and ``bench explain``."""

from __future__ import annotations

import json

import pytest
import torch
from torch import Tensor, nn
from typer.testing import CliRunner

from torchlap import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d
from torchlap.bench.explain import run_benchmark
from torchlap.cli import app
from torchlap.evaluate import EvaluateOptions, evaluate_run
from torchlap.explainers import (
    Explainer,
    applicability,
    available,
    comparison_methods,
    method_facts,
    register,
    registered,
    table_order,
    unregister,
)


class Toy(Explainer):
    """The absolute pixel values, averaged over the channels (class-agnostic)."""

    display_name = "Toy-map"
    kind = "gradient"

    def _explain(self, images: Tensor, target: Tensor | None) -> Tensor:
        with torch.no_grad():
            self.resolve_target(target, self.forward(images))
        return images.abs().mean(dim=1)


class NeedsConv3d(Explainer):
    """Applies to models holding a Conv3d only."""

    not_applicable = "the model has no Conv3d"

    @classmethod
    def applies_to(cls, model: nn.Module) -> bool:
        return any(isinstance(m, nn.Conv3d) for m in model.modules())

    def _explain(self, images: Tensor, target: Tensor | None) -> Tensor:
        return images.mean(dim=1)


def test_a_registered_toy_explainer_reaches_evaluate_report_and_bench(lap_run, tmp_path):
    assert "toy" not in available()
    with registered("toy", Toy):
        options = EvaluateOptions(
            methods=("gradcam", "toy"), max_images=8, max_val_images=8, stability_images=2,
            stability_fractions=(0.1,), batch_size=8, lime_images=0,
        )  # fmt: skip
        out = tmp_path / "eval"
        evaluate_run(lap_run, out=out, options=options)
        results = json.loads((out / "results.json").read_text())
        assert results["methods"]["toy"] == {
            "display_name": "Toy-map", "kind": "gradient", "column_rank": None,
        }  # fmt: skip
        for section in ("localization", "faithfulness", "stability", "timing"):
            assert "toy" in results[section], section
        report = (out / "report.html").read_text()
        assert "Toy-map" in report
        assert "| Toy-map |" in (out / "tables.md").read_text()
        # bench explain: a method that applies to the model joins the default set
        rows, _ = run_benchmark(
            sizes=(16,), batch_size=1, model=_small_lap_model(), rise_masks=2, mask_batch_size=2,
            repeats=1, rounds=1,
        )  # fmt: skip
        assert "toy" in [row.method for row in rows]
        cli = CliRunner().invoke(
            app,
            ["bench", "explain", "--sizes", "32", "--batch-size", "1", "--methods", "toy",
             "--repeats", "1", "--rounds", "1", "--num-classes", "3"],
        )  # fmt: skip
        assert cli.exit_code == 0, cli.output
        assert "toy" in cli.output
    assert "toy" not in available()  # unregistered when the block ends


def test_registry_facts_derive_every_list():
    assert comparison_methods() == (
        "lap", "gradcam", "guided_gradcam", "guided_backprop", "deeplift", "relevance_cam",
        "scorecam", "rise", "sise",
    )  # fmt: skip
    assert table_order()[:9] == [
        "deeplift", "guided_gradcam", "gradcam", "guided_backprop", "relevance_cam", "scorecam",
        "rise", "sise", "lap",
    ]  # fmt: skip
    facts = method_facts(["rise", "lap", "bla"])
    assert list(facts) == ["rise", "lap", "bla"]  # table order
    assert [f["kind"] for f in facts.values()] == ["perturbation", "own map", "own map"]
    vanilla = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    assert applicability("lap", vanilla) == "the model has no LAP layer"
    assert applicability("gradcam", vanilla) is None
    assert applicability("lap", _small_lap_model()) is None
    with registered("needs_conv3d", NeedsConv3d):
        assert applicability("needs_conv3d", vanilla) == "the model has no Conv3d"
        # a method with a comparison rank joins the default comparison set, in rank order
        NeedsConv3d.comparison_rank = 100
        try:
            assert comparison_methods()[-1] == "needs_conv3d"
        finally:
            NeedsConv3d.comparison_rank = None


def test_register_checks_the_facts_and_unregister_removes():
    class BadKind(Explainer):
        kind = "magic"

    with pytest.raises(ValueError, match="kind must be one of"):
        register("bad_kind")(BadKind)

    class BadRank(Explainer):
        column_rank = "first"

    with pytest.raises(TypeError, match="column_rank must be an int or None"):
        register("bad_rank")(BadRank)
    assert "bad_kind" not in available() and "bad_rank" not in available()
    register("toy_two")(Toy)
    assert unregister("toy_two") is Toy
    assert "toy_two" not in available()
    with pytest.raises(ValueError, match="unknown explainer"):
        unregister("toy_two")


def _small_lap_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        LocalAttentionPool2d(4, 2),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        AdaptiveLocalAttentionPool2d(4, 1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
