"""Triggers of the README's "What torchlap refuses" rows (not a test module).

``all_cases()`` maps a row's first cell (its "Class of bad input", verbatim) to a list of
``(fragment, trigger)``: ``fragment`` is the index of a backticked quote in the row's third cell
("What torchlap says"), ``trigger`` a callable that runs the row's example on tiny inputs and
returns the message torchlap gives (the text of the exception, or the CLI's ``Error`` line), with
the temporary paths it used replaced by the names the README writes (``RUN``, ``OUT``, ``DATA``).
The triggers live here (layers, losses, metrics, explainers, helpers) and in
``readme_refusal_data`` (data folders), ``readme_refusal_cli`` (commands: each also checks exit
code 2 and that no path it passed was created), ``readme_refusal_api``, ``readme_refusal_runs``,
``readme_refusal_more`` and ``readme_refusal_extra``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

Trigger = Callable[[], str]
ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError, MemoryError)


class NotRefusedError(AssertionError):
    """A row's example that torchlap accepted."""


def message(call: Callable[[], object]) -> str:
    """Run ``call``; return the text of the refusal it raises (fails when it raises none)."""
    try:
        call()
    except ERRORS as error:
        return str(error)
    raise NotRefusedError(f"{call} was not refused")


def scratch() -> Path:
    """A fresh temporary folder (removed when the process ends)."""
    import atexit
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="readme_refusals_"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def png_file(size: int = 8, mode: str = "RGB") -> Path:
    """A small PNG image in a fresh folder."""
    from PIL import Image

    path = scratch() / "image.png"
    Image.new(mode, (size, size), 128).save(path)
    return path


def tiny_cnn(channels: int = 3, classes: int = 3) -> nn.Module:
    """A small conv net with a (B, C, h, w) last block, in eval mode."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, classes),
    )
    return model.eval()


def _layers() -> dict[str, list[tuple[int, Trigger]]]:
    from torchlap.layers import (
        LocalAttentionPool2d,
        adaptive_local_attention_pool2d,
        local_attention_pool2d,
    )

    x = torch.rand(1, 4, 8, 8)
    s = torch.rand(1, 1, 8, 8)
    return {
        "Flags and sizes of the wrong type": [
            (0, lambda: message(lambda: LocalAttentionPool2d(4, 3, ceil_mode="no"))),
        ],
        "Non-finite numbers": [
            (0, lambda: message(lambda: LocalAttentionPool2d(64, 2, alpha=float("inf")))),
        ],
        "Mismatched dtypes": [
            (0, lambda: message(lambda: LocalAttentionPool2d(4, 2)(x.half()))),
        ],
        "Functional LAP arguments": [
            (0, lambda: message(lambda: local_attention_pool2d(x, s, 3, 2, ceil_mode="no"))),
            (1, lambda: message(lambda: local_attention_pool2d(x.long(), s, 3, 2))),
            (2, lambda: message(lambda: adaptive_local_attention_pool2d(x, s, (2.7, None)))),
        ],
        "Bools in pairs, non-float layers": [
            (0, lambda: message(lambda: LocalAttentionPool2d(4, (True, 2)))),
            (1, lambda: message(lambda: LocalAttentionPool2d(4, 2, dtype=torch.int64))),
        ],
    }


def _losses_and_metrics() -> dict[str, list[tuple[int, Trigger]]]:
    from torchlap.losses import (
        ConceptSets,
        InjectionLoss,
        concept_discrimination_loss,
        suggest_ratios,
    )
    from torchlap.metrics import (
        binary_rule,
        iou_threshold,
        keep_top_k,
        miou_top20,
        salt_and_pepper,
        top_k_mask,
    )

    model = tiny_cnn()
    images = torch.rand(3, 3, 8, 8)
    maps = torch.rand(3, 8, 8)
    masks = torch.rand(3, 8, 8) > 0.5
    concepts = torch.rand(2, 2, 4, 4)
    logits = torch.linspace(-7.93, 17.1, 2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    present = torch.ones(2, 3, dtype=torch.bool)
    labels = torch.tensor([0, 1, 2])
    sets = ConceptSets(torch.eye(2, dtype=torch.bool))
    return {
        "Non-probabilities in the losses": [
            (0, lambda: message(lambda: concept_discrimination_loss(logits, present))),
        ],
        "Loss options": [
            (0, lambda: message(lambda: InjectionLoss(sets, weights={"concordance": math.nan}))),
            (1, lambda: message(lambda: InjectionLoss(sets, use_discriminative="no"))),
            (2, lambda: message(lambda: InjectionLoss(sets, eps=5))),
        ],
        "Loss helpers given the wrong kind": [
            (0, lambda: message(lambda: suggest_ratios(torch.tensor([True, True])))),
        ],
        "Repeated metric levels": [
            (0, lambda: message(lambda: keep_top_k(model, images, maps, labels, ks=(50, 50)))),
        ],
        "Thresholds outside [0, 1] on concept probabilities": [
            (0, lambda: message(lambda: binary_rule(concepts, threshold=2))),
            (
                1,
                lambda: message(lambda: binary_rule(torch.linspace(-5, 5, 32).reshape(2, 1, 4, 4))),
            ),
        ],
        "Seeds that are not ints": [
            (0, lambda: message(lambda: keep_top_k(model, images, maps, labels, seed=1.5))),
        ],
        "Counts and indices that are not ints": [
            (0, lambda: message(lambda: top_k_mask(maps[:2], torch.tensor([2.7, 1.9])))),
            (1, lambda: message(lambda: binary_rule(concepts, positive_concepts=[1.7]))),
        ],
        "Metric flags and numbers of the wrong type": [
            (0, lambda: message(lambda: iou_threshold(maps, masks, normalize="no"))),
            (1, lambda: message(lambda: miou_top20(maps, masks, fraction=True))),
            (2, lambda: message(lambda: salt_and_pepper(images, 0.5, low=math.nan))),
        ],
        "Seeds, counts and flags of helpers": [],
        "Non-finite or empty inputs to the metrics": [
            (0, lambda: message(lambda: keep_top_k(model, _nan_at(images, 2), maps, labels))),
        ],
    }


def _nan_at(images: torch.Tensor, index: int) -> torch.Tensor:
    """A copy of ``images`` with a NaN pixel in image ``index``."""
    bad = images.clone()
    bad[index, 0, 0, 0] = math.nan
    return bad


def _explainers() -> dict[str, list[tuple[int, Trigger]]]:
    from torchlap import explain
    from torchlap.explainers import RiseMasks, class_scores, lap_all, otsu_threshold, upsample

    model = tiny_cnn()
    x = torch.rand(2, 3, 8, 8)
    return {
        "Out-of-range targets": [
            (0, lambda: message(lambda: explain(model, x, "gradcam", target=5))),
        ],
        "Images that do not fit the model": [
            (0, lambda: message(lambda: explain(model, x.double(), "gradcam"))),
        ],
        "Explainer options that give degenerate maps": [
            (0, lambda: message(lambda: explain(model, x, "deeplift", baseline=math.nan))),
            (1, lambda: message(lambda: explain(model, x, "sise", mu=2))),
            (2, lambda: message(lambda: lap_all([torch.rand(2, 4, 4)], threshold=math.nan))),
            (3, lambda: message(lambda: lap_all([_nan_at(torch.rand(1, 1, 4, 4), 0)[:, 0]]))),
        ],
        "Numbers as strings or bools in explainer options": [
            (1, lambda: message(lambda: RiseMasks(4, (8, 8), seed=1.7))),
        ],
        "Classes and canonizers that do not exist": [
            (0, lambda: message(lambda: class_scores(torch.rand(2, 3), torch.tensor([0, 5])))),
            (1, lambda: message(lambda: explain(model, x, "relevance_cam", canonizers=[1]))),
        ],
        "NaN or non-float maps in the explainers' map helpers": [
            (0, lambda: message(lambda: otsu_threshold(_nan_at(torch.rand(1, 1, 4, 4), 0)[:, 0]))),
            (2, lambda: message(lambda: upsample(torch.rand(2, 4, 4), (0, 8)))),
            (3, lambda: message(lambda: upsample(torch.ones(2, 4, 4, dtype=torch.int64), (8, 8)))),
        ],
        "Unknown explainer options": [],
    }


def _models_and_helpers() -> dict[str, list[tuple[int, Trigger]]]:
    from torchlap.data import boxes_to_mask, default_transforms, load_dataset, load_image
    from torchlap.explainers import select_lap_map, table_order
    from torchlap.export import LapExportModule
    from torchlap.io import atomic_write_json, sha256_file
    from torchlap.layers import LapMaps
    from torchlap.metrics import LearnedConceptPredictor, drop_inc_win, paper_primary_rule
    from torchlap.models import LapConv2d, SmallCNN, adapt_input_weight, build_model

    model = tiny_cnn()
    x = torch.rand(2, 3, 8, 8)
    lap_maps = LapMaps(torch.rand(3, 4, 4, 4), torch.rand(3, 1, 4, 4), None, (8, 8))
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 5.0, 3.0]])
    return {
        "Channel counts other than 1 or 3": [
            (0, lambda: message(lambda: load_image(png_file(), 2))),
        ],
        "A path that is not a path": [
            (0, lambda: message(lambda: sha256_file(3))),
        ],
        "Flags of the file helpers": [
            (0, lambda: message(lambda: atomic_write_json("never.json", {}, allow_nan="no"))),
        ],
        "Seeds, counts and flags of helpers": [
            (0, lambda: message(lambda: LearnedConceptPredictor(4, 3, seed=-1))),
            (4, lambda: message(lambda: adapt_input_weight(torch.rand(4, 3, 3, 3), 0))),
            (6, lambda: message(lambda: default_transforms(32, 3, train="no"))),
        ],
        "Arguments of the wrong kind to building blocks and models": [
            (0, lambda: message(lambda: LapConv2d(3, 4, 3, 2, padding=-1))),
            (1, lambda: message(lambda: SmallCNN(3)(torch.rand(2, 3, 4, 4)))),
        ],
        "Targets and flags of `select_lap_map`": [
            (0, lambda: message(lambda: select_lap_map(lap_maps, torch.tensor([0, 1, 5]), 4))),
        ],
        "A text where a list of names is expected": [
            (0, lambda: message(lambda: table_order("gradcam"))),
            (2, lambda: message(lambda: paper_primary_rule(2, "binary"))),
        ],
        "LAP options of `build_model` with weights to fetch": [
            (
                0,
                lambda: message(
                    lambda: build_model("resnet18", 3, pretrained="IMAGENET1K_V1", n_concepts=0)
                ),
            ),
        ],
        "Boxes that are not boxes of the image": [
            (0, lambda: message(lambda: boxes_to_mask(boxes, 4.5, 4))),
            (1, lambda: message(lambda: boxes_to_mask(boxes, 4, 4))),
        ],
        "Export options": [
            (0, lambda: message(lambda: LapExportModule(model, decay="0.5"))),
            (1, lambda: message(lambda: LapExportModule(model, threshold=2))),
        ],
        "An empty dataset name; normalisation and split numbers as texts or bools": [
            (0, lambda: message(lambda: load_dataset(""))),
        ],
        "A `to_input` that is not a callable": [
            (
                0,
                lambda: message(
                    lambda: drop_inc_win(
                        model, x, x[:, 0], torch.tensor([0, 1]), to_input="normalize"
                    )
                ),
            ),
        ],
    }


def all_cases() -> dict[str, list[tuple[int, Trigger]]]:
    """Every covered row's triggers, by row key."""
    import readme_refusal_api
    import readme_refusal_cli
    import readme_refusal_data
    import readme_refusal_extra
    import readme_refusal_more
    import readme_refusal_runs

    groups = (_layers, _losses_and_metrics, _explainers, _models_and_helpers)
    groups += (readme_refusal_data.cases, readme_refusal_cli.cases, readme_refusal_api.cases)
    groups += (readme_refusal_runs.cases, readme_refusal_more.cases, readme_refusal_extra.cases)
    cases: dict[str, list[tuple[int, Trigger]]] = {}
    for group in groups:
        for key, triggers in group().items():
            if triggers:
                cases.setdefault(key, []).extend(triggers)
    return cases
