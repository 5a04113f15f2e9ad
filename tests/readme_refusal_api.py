"""Triggers of more README refusal rows reached through the Python API (not a test module; see
``readme_refusal_cases``)."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image
from torch import nn

from readme_refusal_cases import Trigger, message, scratch, tiny_cnn
from torchlap import explain


class TupleModel(nn.Module):
    """A classifier returning ``(logits, features)``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = tiny_cnn()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(x), x


class TupleBlock(nn.Module):
    """A block returning ``(features, aux)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(x)
        return y, y.mean()


class BlockModel(nn.Module):
    """A model whose submodule ``block`` returns a tuple."""

    def __init__(self) -> None:
        super().__init__()
        self.block = TupleBlock()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.block(x)[0].mean((2, 3)))


def _bn_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.BatchNorm2d(4, affine=False),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()


def _float_tiff() -> str:
    from torchlap.data import load_image

    path = scratch() / "f.tif"
    Image.fromarray(np.linspace(0, 255, 64, dtype=np.float32).reshape(8, 8), mode="F").save(path)
    return message(lambda: load_image(path, 1))


def _two_frame_tiff() -> str:
    from torchlap.data import load_image

    path = scratch() / "two.tif"
    frames = [Image.new("L", (8, 8), v) for v in (0, 255)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    return message(lambda: load_image(path, 1))


def _write_records(*records: object) -> str:
    from torchlap.data import write_annotations

    return message(lambda: write_annotations(scratch() / "annotations.csv", list(records)))


def _from_records() -> str:
    from torchlap.data import AnnotatedFolder, ImageRecord

    folder = scratch()
    records = [ImageRecord("b.png", "y", "train"), ImageRecord("a.png", "", "train")]
    return message(
        lambda: AnnotatedFolder.from_records(folder, records, source="SRC", has_regions=False)
    )


def _save_over(existing: bool) -> str:
    from readme_refusal_data import annotated_folder
    from torchlap.data import load_dataset

    dataset = load_dataset(annotated_folder(), image_size=16)
    folder = scratch()
    target = folder / ("taken.csv" if existing else "out")
    if existing:
        target.write_text("mine\n")
        return message(lambda: dataset.save_annotations(target))
    target.mkdir()
    return message(lambda: dataset.save_annotations(target)).replace(str(target), "out")


def _lap_model() -> nn.Module:
    from readme_refusal_cli import tiny_run
    from torchlap import load_run

    return load_run(tiny_run()).model


def cases() -> dict[str, list[tuple[int, Trigger]]]:
    """The API rows' triggers."""
    from torchlap import attention_maps, lap_parameters
    from torchlap.data import ImageRecord
    from torchlap.export import LapExportModule
    from torchlap.layers import AdaptiveLocalAttentionPool2d, ConceptScorer, LocalAttentionPool2d
    from torchlap.metrics import (
        concept_size_features,
        drop_increase,
        ebpg,
        salt_and_pepper,
    )
    from torchlap.metrics.lime_faithfulness import cell_means
    from torchlap.models import NormalizedClassifier, SmallCNN
    from torchlap.train.config import TrainConfig, parse_phase

    model = tiny_cnn()
    small = SmallCNN(3).eval()
    x = torch.rand(2, 3, 16, 16)
    maps = torch.rand(2, 16, 16)
    return {
        "Unknown explainer options": [
            (0, lambda: message(lambda: explain(model, x, "rise", masks=5))),
        ],
        "Pixels outside the file's range": [(0, _float_tiff)],
        "Images torchlap would misread": [(0, _two_frame_tiff)],
        "A string where a flag is expected": [
            (0, lambda: message(TrainConfig("lesions", "never", overwrite="no").validate)),
        ],
        "Model outputs that are not logits": [
            (0, lambda: message(lambda: explain(TupleModel().eval(), x, "gradcam"))),
        ],
        "A layer that returns no tensor": [
            (0, lambda: message(lambda: explain(BlockModel().eval(), x, "gradcam", layer="block"))),
        ],
        "Bad input to a building block": [
            (0, lambda: message(lambda: ConceptScorer(4, 1)(torch.rand(2, 5, 4, 4)))),
        ],
        "Input on another device, empty maps": [
            (
                0,
                lambda: message(
                    lambda: LocalAttentionPool2d(4, 2, device="meta")(torch.rand(1, 4, 8, 8))
                ),
            ),
            (
                1,
                lambda: message(lambda: AdaptiveLocalAttentionPool2d(4, 2)(torch.rand(2, 4, 0, 8))),
            ),
        ],
        "LAP helpers on the wrong model": [
            (0, lambda: message(lambda: lap_parameters(model))),
            (1, lambda: message(lambda: attention_maps("x"))),
        ],
        "Batch norms Relevance-CAM's default canonizers cannot merge": [
            (0, lambda: message(lambda: explain(_bn_model(), x, "relevance_cam", layer="3"))),
        ],
        "Layers that give flat maps": [
            (0, lambda: message(lambda: explain(small, x, "scorecam", layer="avgpool"))),
        ],
        "SISE layers repeated, out of order or inside a LAP layer": [
            (0, lambda: message(lambda: explain(small, x, "sise", layers=["layer1", "layer1"]))),
            (1, lambda: message(lambda: explain(small, x, "sise", layers=["layer2", "layer1"]))),
            (
                2,
                lambda: message(
                    lambda: explain(_lap_model(), x, "sise", layers=["net.layer3.pool.scorer"])
                ),
            ),
        ],
        "Seeds and RISE grids out of range": [
            (0, lambda: message(lambda: explain(model, x, "rise", seed=-1))),
            (1, lambda: message(lambda: explain(model, x, "rise", grid_size=10**6))),
        ],
        "Explainer targets of other integer types": [
            (0, lambda: message(lambda: explain(model, x, "gradcam", target=2**70))),
        ],
        "Saving over a file": [(0, lambda: _save_over(True))],
        "Saving annotations where no file can be": [(0, lambda: _save_over(False))],
        "Records `annotations.csv` cannot hold": [
            (0, lambda: _write_records(ImageRecord("a.png", "x", "train", [(math.nan, 0, 1, 1)]))),
            (2, lambda: _write_records(ImageRecord(" a.png", "x", "train"))),
            (3, lambda: _write_records(*[ImageRecord("a.png", "x", "train")] * 2)),
            (4, _from_records),
        ],
        "Labels out of range in Drop%/Increase%": [
            (
                0,
                lambda: message(
                    lambda: drop_increase(
                        tiny_cnn(classes=2),
                        x[:1].repeat(3, 1, 1, 1),
                        maps[:1].repeat(3, 1, 1),
                        torch.tensor([5, 5, 5]),
                    )
                ),
            ),
        ],
        "Phase settings the phases would drop": [
            (
                0,
                lambda: message(
                    TrainConfig(
                        "lesions", "never", phases=[parse_phase("lap:2:1e-4")], schedule="constant"
                    ).validate
                ),
            ),
        ],
        "Cells that do not match their grid": [
            (
                0,
                lambda: message(
                    lambda: cell_means(
                        maps,
                        torch.arange(4)
                        .reshape(2, 2)
                        .repeat_interleave(8, 0)
                        .repeat_interleave(8, 1),
                        (3, 3),
                    )
                ),
            ),
            (
                4,
                lambda: message(
                    lambda: cell_means(maps, torch.zeros(16, 16, dtype=torch.int64), (0, 0))
                ),
            ),
        ],
        "Images a model cannot take": [
            (
                0,
                lambda: message(
                    lambda: NormalizedClassifier(model, [0.5] * 3, [0.2] * 3)(
                        (x * 255).to(torch.uint8)
                    )
                ),
            ),
        ],
        "Two draw sources for salt and pepper; repeated image ids": [
            (
                0,
                lambda: message(
                    lambda: salt_and_pepper(x, 0.1, generator=torch.Generator(), seed=1)
                ),
            ),
            (1, lambda: message(lambda: salt_and_pepper(x, 0.1, level=2))),
            (2, lambda: message(lambda: salt_and_pepper(x, 0.1, image_ids=torch.tensor([1, 1])))),
        ],
        "Tensors without values, given to a function that reads values": [
            (0, lambda: message(lambda: ebpg(maps.to("meta"), maps > 0.5))),
        ],
        "Maps of 0x0 pixels": [
            (0, lambda: message(lambda: concept_size_features(torch.rand(2, 3, 0, 0)))),
        ],
        "Images the export module cannot take": [
            (0, lambda: message(lambda: LapExportModule(_lap_model())(torch.rand(3, 32, 32)))),
            (
                1,
                lambda: message(
                    lambda: LapExportModule(_lap_model())(
                        torch.zeros(1, 1, 32, 32, dtype=torch.uint8)
                    )
                ),
            ),
        ],
        "Non-finite model outputs": [],
        "Explainer options that give degenerate maps": [],
        "A path that is not a path": [],
        "Channel counts other than 1 or 3": [],
        "Non-finite numbers": [
            (1, lambda: message(lambda: explain(model, _nan(x), "gradcam"))),
        ],
        "Non-finite or wrong-kind values in other helpers": [],
    }


def _nan(x: torch.Tensor) -> torch.Tensor:
    bad = x.clone()
    bad[1, 0, 0, 0] = math.nan
    return bad
