"""An image's random draws (keep-k% and Drop%/Increase% tie-breaks, stability's noise) are
seeded by its id, its index in the split before ``--max-images`` cut it: a folder's
class-stratified cut keeps each image's draws whatever ``--max-images`` says, and a built-in
benchmark's prefix cut keeps the ids it always had (``0 .. n-1``)."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from synthetic_eval import recording
from torch import nn

from torchlap.data.export import export_builtin
from torchlap.evaluate import EvalData, EvaluateOptions, load_eval_data
from torchlap.evaluate.method import evaluate_method
from torchlap.evaluate.provenance import DataSettings

# one image per batch: a score then depends on the image and its draws alone, not on the float
# rounding of a batch of other images
OPTIONS = dict(methods=("gradcam",), ks=(30, 50, 70), stability_images=8,
               stability_fractions=(0.2,), batch_size=1, tie_draws=4, seed=3)  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A lesions folder whose test split (20 images) lists every negative before every
    positive, so that ``--max-images`` takes a class-stratified, seeded cut (not a prefix)."""
    root = export_builtin("lesions", tmp_path_factory.mktemp("ids") / "les", n_images=40,
                          image_size=32)  # fmt: skip
    path = root / "annotations.csv"
    rows = list(csv.DictReader(path.open()))
    for row in rows:  # half of the training images (two of every four) join the test split
        if row["split"] == "train" and int(Path(row["image"]).stem) % 4 >= 2:
            row["split"] = "test"
    rows.sort(key=lambda row: row["split"] != "test" or row["label"] == "positive")
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def fake_run() -> SimpleNamespace:
    """What load_eval_data reads of a run (no model needed)."""
    return SimpleNamespace(config={}, image_size=32, in_channels=1,
                           classes=["negative", "positive"])  # fmt: skip


def pixel_reader() -> nn.Module:
    """Grad-CAM's maps of a ReLU network have tied zero plateaus; the head's large weights on
    every pixel make which tied pixels are kept move the logits."""
    torch.manual_seed(3)  # a network that predicts either class on these images
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 32 * 32, 2))  # fmt: skip
    with torch.no_grad():
        model[3].weight.mul_(40)
    return model.eval()


def scored(test: EvalData, val: EvalData, monkeypatch, target: str = "label") -> tuple[dict, dict]:
    """Per image id: the per-sample faithfulness scores, and the noisy copy of stability.
    ``target="prediction"``: the maps explain the predicted class (the misclassified images
    are explained again for their label, and scored on their own)."""
    model = pixel_reader()
    with torch.no_grad():
        test_targets, val_targets = (
            (test.labels, val.labels) if target == "label"
            else (model(test.images).argmax(1), model(val.images).argmax(1))
        )  # fmt: skip
    with monkeypatch.context() as patch:
        noised = recording(patch)
        out, _ = evaluate_method(
            "gradcam", model, test, val, test_targets, val_targets,
            EvaluateOptions(**OPTIONS, target=target), torch.device("cpu"),
        )  # fmt: skip
    ids = test.image_ids.tolist()
    scores = {
        name: dict(zip(ids, values, strict=True))
        for name, values in out["per_sample"].items()
        if name.startswith(("faithfulness/keep_top_k/", "faithfulness/drop", "faithfulness/inc"))
    }
    (noisy,) = noised
    return scores, dict(zip(ids, noisy, strict=False))  # the stability subset: the first ids


def test_a_cut_keeps_each_images_index_in_the_split_as_its_id(folder):
    whole = load_eval_data(fake_run(), str(folder), "test", None)
    assert torch.equal(whole.image_ids, torch.arange(len(whole)))
    assert len(whole) == 20
    for count in (8, 12):
        cut = load_eval_data(fake_run(), str(folder), "test", count)
        assert len(cut) == count and cut.image_ids.dtype == torch.long
        assert not torch.equal(cut.image_ids, torch.arange(count))  # stratified, not a prefix
        assert torch.equal(cut.images, whole.images[cut.image_ids])
        assert torch.equal(cut.labels, whole.labels[cut.image_ids])


@pytest.mark.parametrize("target", ["label", "prediction"])
def test_an_image_gets_the_same_draws_under_max_images_8_and_12(folder, monkeypatch, target):
    torch.set_num_threads(1)
    val = load_eval_data(fake_run(), str(folder), "val", None)
    eight = load_eval_data(fake_run(), str(folder), "test", 8)
    twelve = load_eval_data(fake_run(), str(folder), "test", 12)
    both = sorted(set(eight.image_ids.tolist()) & set(twelve.image_ids.tolist()))
    assert set(eight.image_ids.tolist()) <= set(twelve.image_ids.tolist())
    # the images shared are at other positions in the two evaluated sets
    moved = [i for i in both if eight.image_ids.tolist().index(i) !=
             twelve.image_ids.tolist().index(i)]  # fmt: skip
    assert moved
    scores8, noisy8 = scored(eight, val, monkeypatch, target)
    scores12, noisy12 = scored(twelve, val, monkeypatch, target)
    assert scores8.keys() == scores12.keys() and scores8
    for name, by_id in scores8.items():
        assert {i: by_id[i] for i in both} == {i: scores12[name][i] for i in both}, name
    # the tie-breaks matter: some image's draws disagree (a mean strictly between 0 and 1)
    keep = [v for n, by_id in scores8.items() if "keep_top_k" in n for v in by_id.values()]
    assert any(v is not None and 0 < v < 1 for v in keep)
    noised_in_both = sorted(noisy8.keys() & noisy12.keys())
    assert set(moved) & set(noised_in_both)
    for i in noised_in_both:
        assert torch.equal(noisy8[i], noisy12[i]), i


def test_a_built_in_prefix_cut_keeps_the_ids_and_the_numbers(monkeypatch):
    torch.set_num_threads(1)
    run = SimpleNamespace(config={}, image_size=32, in_channels=1,
                          classes=["negative", "positive"])  # fmt: skip
    settings = DataSettings(n_images=100)
    test = load_eval_data(run, "lesions", "test", 6, settings=settings)
    whole = load_eval_data(run, "lesions", "test", None, settings=settings)
    assert len(whole) > 6 and torch.equal(test.image_ids, torch.arange(6))
    val = load_eval_data(run, "lesions", "val", None, settings=settings)
    given, noisy = scored(test, val, monkeypatch)
    positions, noisy_positions = scored(replace(test, image_ids=None), val, monkeypatch)
    assert given == positions  # the scores of each image's position, as before
    assert noisy.keys() == noisy_positions.keys()
    assert all(torch.equal(noisy[i], noisy_positions[i]) for i in noisy)


def test_eval_data_refuses_ids_that_are_not_one_distinct_index_per_image():
    images = torch.rand(3, 1, 4, 4)
    fields = dict(
        images=images,
        labels=torch.tensor([0, 1, 0]),
        masks=torch.zeros(3, 4, 4, dtype=torch.bool),
        has_region=torch.zeros(3, dtype=torch.bool),
        classes=["a", "b"],
        name="s",
    )
    with pytest.raises(ValueError, match=r"image_ids must be .* distinct image indices"):
        EvalData(**fields, image_ids=torch.tensor([0, 2, 2]))
    with pytest.raises(ValueError, match=r"got shape \(2,\)"):
        EvalData(**fields, image_ids=torch.tensor([0, 1]))
    with pytest.raises(TypeError, match=r"image_ids must be"):
        EvalData(**fields, image_ids=[0, 1, 2])
