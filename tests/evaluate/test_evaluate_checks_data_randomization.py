"""``compare``'s data randomization test (Adebayo et al. 2018, section 4): which run each
shuffled-label run is put against, which data and methods it is checked on, and where the
entry is written; the runs, the data and the maps are stand-ins recorded here."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import torchlap.evaluate.checks as checks
from torchlap.evaluate import EvalData, EvaluateOptions
from torchlap.evaluate.sanity import spearman_abs


def _config(arch: str, shuffle: bool, data: str = "lesions") -> dict[str, Any]:
    return {
        "train": {"data": data, "model": "smallcnn"},
        "model": {"builder": "lapify", "arch": arch},
        "shuffle_labels": shuffle,
    }


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 2, 3, padding=1)).eval()


def _maps(model: nn.Module, images: Tensor) -> Tensor:
    weight = model[0].weight.detach()[0, :, 1, 1]
    return torch.einsum("nchw,c->nhw", images, weight)


@pytest.fixture
def stand_ins(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    seen: dict[str, list] = {"runs": [], "sources": [], "explained": []}
    models = {"real": _model(0), "shuffled": _model(1), "shuffled_too": _model(2)}

    def load_run(run_dir: Any) -> SimpleNamespace:
        seen["runs"].append(run_dir)
        return SimpleNamespace(model=models[run_dir], concept_sets=None)

    def load_eval_data(run: Any, source: Any, split: str, n: int, settings: Any = None) -> Any:
        seen["sources"].append((source, split, n))
        images = torch.rand(n, 3, 5, 5, generator=torch.Generator().manual_seed(4))
        return EvalData(images, torch.zeros(n, dtype=torch.long),
                        torch.zeros(n, 5, 5, dtype=torch.bool), torch.zeros(n, dtype=torch.bool),
                        ["a", "b"], "lesions")  # fmt: skip

    def explain_all(model: nn.Module, images: Tensor, labels: Tensor, method: str, *_a: Any):
        seen["explained"].append((model, method))
        return _maps(model, images)

    monkeypatch.setattr(checks, "load_run", load_run)
    monkeypatch.setattr(checks, "load_eval_data", load_eval_data)
    monkeypatch.setattr(checks, "explain_all", explain_all)
    seen["models"] = models  # type: ignore[assignment]
    return seen


def _compare(tmp_path: Path, data: str | None) -> dict[str, Any]:
    configs = {
        "shuffled": _config("smallcnn", True),
        "shuffled_too": _config("smallcnn", True),  # shuffled too: never a counterpart
        "wider": _config("resnet18", False),  # real labels, another architecture
        "real": _config("smallcnn", False),
        "orphan": _config("smallcnn", True, data="digits"),
    }
    results: dict[str, Any] = {name: {} for name in configs}
    results["shuffled"] = {"localization": {"gradcam": {}}, "timing": {"lap": {}}}
    results["shuffled_too"] = {"timing": {"gradcam": {}}}
    options = EvaluateOptions(methods=("gradcam", "lap", "rise"), sanity_images=3,
                              sanity_threshold=0.4)  # fmt: skip
    run_dirs = {name: name for name in configs}
    checks.compare_data_randomization(run_dirs, configs, results, data, tmp_path, options)
    return results


def test_each_shuffled_run_is_put_against_the_real_run_of_its_data_and_model(
    stand_ins: dict, tmp_path: Path
) -> None:
    results = _compare(tmp_path, None)
    assert results["orphan"]["data_randomization"] == {
        "skipped": "no run of the same data and model trained on the real labels"
    }
    for name in ("wider", "real"):
        assert "data_randomization" not in results[name]
    entry = results["shuffled"]["data_randomization"]
    assert (
        entry["against"] == "real"
        and results["shuffled_too"]["data_randomization"]["against"] == "real"
    )
    # the methods evaluated for the run (localization or timing), in the options' order
    assert list(entry["methods"]) == ["gradcam", "lap"]
    assert list(results["shuffled_too"]["data_randomization"]["methods"]) == ["gradcam"]
    assert stand_ins["runs"] == ["real", "shuffled", "real", "shuffled_too"]
    assert stand_ins["sources"] == [("lesions", "test", 3)] * 2  # the run's own data
    # the similarity of the real model's maps with the shuffled model's, per image
    images = torch.rand(3, 3, 5, 5, generator=torch.Generator().manual_seed(4))
    models = stand_ins["models"]
    rho = spearman_abs(_maps(models["real"], images), _maps(models["shuffled"], images))
    assert entry["methods"]["gradcam"]["spearman_abs"]["mean"] == pytest.approx(float(rho.mean()))
    assert entry["threshold"] == 0.4 and entry["n_images"] == 3
    on_disk = json.loads((tmp_path / "shuffled" / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results["shuffled"]))
    assert not (tmp_path / "orphan").exists()


def test_the_data_given_to_compare_is_the_data_checked(stand_ins: dict, tmp_path: Path) -> None:
    _compare(tmp_path, "elsewhere")
    assert [source for source, _, _ in stand_ins["sources"]] == ["elsewhere", "elsewhere"]
