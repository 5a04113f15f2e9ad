"""`torchlap explain`'s inputs and arguments at their edges, before any run is read: a folder
without images, arguments of the wrong value, ``--out`` inside an input folder."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from torchlap.evaluate.explain import collect_images, explain_files
from torchlap.io import TEMP_SUFFIX


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(path)
    return path


def test_a_folder_without_images_is_refused_naming_the_suffixes_accepted(tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("no image here")
    with pytest.raises(ValueError, match=rf"no image files found in {empty}, {notes}; accepted "
                       r"suffixes: \.bmp, .*\.png"):  # fmt: skip
        collect_images([empty, notes])
    _image(notes / "x.png")
    assert [image.name for image in collect_images([empty, notes])] == ["x"]


@pytest.fixture
def fake_run(monkeypatch):
    """A run without training: ``read_run_facts`` and ``load_run`` of the explain module give
    a tiny SmallCNN (3 classes, no LAP layer) on 16-pixel RGB images."""
    from torchlap.evaluate import explain as explain_module
    from torchlap.models.wrapping import SmallCNN

    torch.manual_seed(0)
    facts = SimpleNamespace(in_channels=3, image_size=16)
    run = SimpleNamespace(model=SmallCNN(3, width=4).eval(), classes=["a", "b", "c"],
                          concept_sets=None, built=[])  # fmt: skip

    def load_run(given: object) -> SimpleNamespace:
        assert given is facts
        run.built.append(1)
        return run

    monkeypatch.setattr(explain_module, "read_run_facts", lambda run_dir: facts)
    monkeypatch.setattr(explain_module, "load_run", load_run)
    return run


def test_a_method_that_does_not_apply_to_the_model_is_refused_before_writing(
    fake_run, tmp_path
) -> None:
    image = _image(tmp_path / "in" / "x.png")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"run: method 'lap' does not apply to its model \("):
        explain_files(tmp_path / "run", [image], ["gradcam", "lap"], out)
    assert not out.exists()


def test_images_with_non_finite_pixels_are_refused_naming_five_before_the_model(
    fake_run, tmp_path, monkeypatch
) -> None:
    from torchlap.evaluate import explain as explain_module

    images = [_image(tmp_path / "in" / f"x{i}.png") for i in range(7)]
    bad = {1, 2, 3, 4, 5, 6}

    def read_image(path: Path, channels: int, size: int) -> torch.Tensor:
        pixels = torch.full((channels, size, size), 0.5)
        if int(path.stem[1:]) in bad:
            pixels[0, 1, 2] = float("nan") if int(path.stem[1:]) % 2 else float("inf")
        return pixels

    monkeypatch.setattr(explain_module, "read_image", read_image)
    named = ", ".join(str(images[i]) for i in range(1, 6))  # the first five only
    with pytest.raises(ValueError, match=rf"^{named} hold\(s\) NaN or infinite pixels; their"):
        explain_files(tmp_path / "run", [tmp_path / "in"], ["gradcam"], tmp_path / "out")
    assert not fake_run.built and not (tmp_path / "out").exists()


def test_an_out_folder_is_made_with_its_parents_reused_by_a_rerun_and_not_explained(
    fake_run, tmp_path
) -> None:
    _image(tmp_path / "in" / "deep" / "er" / "x.png")  # its outputs go two folders down
    out = tmp_path / "new" / "nested" / "out"
    sub = out / "deep" / "er"
    for batch_size in (1, 16):
        written = explain_files(tmp_path / "run", [tmp_path / "in"], ["gradcam"], out, batch_size)
        assert written == [sub / "x.png"] and (sub / "x.npz").is_file()
        # what a write killed mid-way leaves (a process id no process has): removed by a rerun
        stale = sub / f".x.npz.{4194303}.0123abcd{TEMP_SUFFIX}"
        assert not stale.exists()
        stale.write_bytes(b"half")
    # --out named as the input: its own figures are not explained again, and nothing is left
    with pytest.raises(ValueError, match=rf"no image files to explain: {out} holds only explain"):
        explain_files(tmp_path / "run", [out], ["gradcam"], out)


def test_each_file_holds_its_images_maps_and_title_over_batches(
    fake_run, tmp_path, monkeypatch
) -> None:
    # three images in batches of two: each figure's title names the image, the class the
    # model predicts for it and its true class (its folder's name when that is a class of the
    # run, else "?"); each .npz holds that image's map for that class, as explained alone
    import torchlap.report.plots as plots
    from torchlap.evaluate import explain as explain_module
    from torchlap.explainers import explain

    paths = [_image(tmp_path / "in" / folder / f"{stem}.png")
             for folder, stem in (("b", "p"), ("other", "q"), ("c", "r"))]  # fmt: skip
    pixels = {p.stem: torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(i))
              for i, p in enumerate(paths)}  # fmt: skip
    monkeypatch.setattr(explain_module, "read_image", lambda path, c, s: pixels[path.stem])
    titles: dict[str, str] = {}

    def plot(image, maps, layers, title, path, names=None, absolute=()) -> Path:
        titles[Path(path).stem] = title
        assert set(absolute) == set()  # post-hoc maps are drawn divided by their peak
        assert set(maps) == {"gradcam", "deeplift"} and layers == {}
        Path(path).write_bytes(b"figure")
        return Path(path)

    monkeypatch.setattr(plots, "plot_explanation", plot)
    out = tmp_path / "out"
    explain_files(tmp_path / "run", [tmp_path / "in"], ["gradcam", "deeplift"], out, 2)
    model = fake_run.model
    for path, truth in zip(paths, ("b", "?", "c"), strict=True):
        image = pixels[path.stem][None]
        with torch.no_grad():
            predicted = int(model(image).argmax(1))
        name = f"{path.parent.name}/{path.stem}"
        assert titles[path.stem] == (
            f"{path.name}: predicted {fake_run.classes[predicted]}, true {truth}"
        )
        arrays = np.load(out / f"{name}.npz")
        assert sorted(arrays.files) == ["deeplift", "gradcam"]
        for method in ("gradcam", "deeplift"):
            alone = explain(model, image, method, target=torch.tensor([predicted]))[0]
            torch.testing.assert_close(torch.from_numpy(arrays[method]), alone, rtol=1e-5,
                                       atol=1e-6)  # fmt: skip


@pytest.mark.parametrize(
    ("methods", "batch_size", "error", "message"),
    [
        (
            ["gradcam", "gradcam"],
            16,
            ValueError,
            r"--methods are listed twice: .*gradcam more than once",
        ),
        (["gradcam"], 0, ValueError, r"--batch-size must be an integer >= 1, got 0"),
        (["gradcam"], True, ValueError, r"--batch-size must be an integer >= 1, got True"),
        (["gradcam"], 2.0, ValueError, r"--batch-size must be an integer >= 1, got 2\.0"),
    ],
)
def test_repeated_methods_and_bad_batch_sizes_are_refused_before_the_run_is_read(
    tmp_path, methods, batch_size, error, message
) -> None:
    image = _image(tmp_path / "in" / "x.png")
    with pytest.raises(error, match=message):
        explain_files(tmp_path / "no_run", [image], methods, tmp_path / "out", batch_size)
    assert not (tmp_path / "out").exists()


def test_a_lap_run_gets_its_concept_sets_and_its_maps_are_cleared(tmp_path, monkeypatch) -> None:
    # the run facts a method takes (LAP's concept sets) reach that method only; the concept
    # maps of the prediction pass are saved per LAP layer, then dropped from the model
    from torchlap.evaluate import explain as explain_module
    from torchlap.layers import lap_modules
    from torchlap.models import lapify
    from torchlap.models.wrapping import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN(3, width=4)
    lapify(model)
    sets = object()  # whatever the run holds, passed on as it is
    facts = SimpleNamespace(in_channels=3, image_size=16)
    run = SimpleNamespace(model=model.eval(), classes=["a", "b", "c"], concept_sets=sets)
    monkeypatch.setattr(explain_module, "read_run_facts", lambda run_dir: facts)
    monkeypatch.setattr(explain_module, "load_run", lambda given: run)
    calls: list[tuple[str, dict]] = []

    def spy(model, images, method, target, **options) -> torch.Tensor:
        calls.append((method, options))
        return torch.zeros(len(images), 16, 16)

    monkeypatch.setattr(explain_module, "explain", spy)
    image = _image(tmp_path / "in" / "x.png")
    explain_files(tmp_path / "run", [image], ["lap", "gradcam"], tmp_path / "out")
    assert calls == [("lap", {"concept_sets": sets}), ("gradcam", {})]
    layers = list(lap_modules(model))
    arrays = np.load(tmp_path / "out" / "x.npz")
    assert layers and sorted(arrays.files) == sorted(
        ["lap", "gradcam", *(f"lap_concepts/{n}" for n in layers)]
    )
    assert all(getattr(m, "maps", None) is None for m in lap_modules(model).values())


def test_outputs_that_would_replace_what_explain_did_not_write_are_refused(
    fake_run, tmp_path
) -> None:
    # every case is refused before anything is written, and leaves what was there untouched
    run = tmp_path / "run"
    image = _image(tmp_path / "in" / "x.png")
    afile = tmp_path / "afile"
    afile.write_text("mine")
    with pytest.raises(ValueError, match=rf"--out {afile} exists and is not a folder"):
        explain_files(run, [image], ["gradcam"], afile)
    with pytest.raises(ValueError, match=r"would replace an input image; choose an --out"):
        explain_files(run, [image], ["gradcam"], tmp_path / "in")  # x.png is the input
    out = tmp_path / "out"
    out.mkdir()
    (out / "x.npz").write_text("a file of the user's")
    with pytest.raises(FileExistsError, match=r"already holds .*x\.npz, which torchlap"):
        explain_files(run, [image], ["gradcam"], out)
    assert sorted(p.name for p in out.iterdir()) == ["x.npz"]
    _image(tmp_path / "in2" / "sub" / "y.png")
    (out / "sub").write_text("a file where a folder of outputs goes")
    with pytest.raises(ValueError, match=r"images under sub/ go to .*sub, which is not a folder"):
        explain_files(run, [tmp_path / "in2"], ["gradcam"], out)
    assert (out / "sub").read_text().startswith("a file")


def test_a_claimed_output_replaced_by_another_file_is_not_overwritten(fake_run, tmp_path) -> None:
    # the manifest claims x.npz, but the file there now is not one explain wrote
    image = _image(tmp_path / "in" / "x.png")
    out = tmp_path / "out"
    explain_files(tmp_path / "run", [image], ["gradcam"], out)
    (out / "x.npz").write_text("not a zip: the user's file")
    with pytest.raises(FileExistsError, match=r"already holds .*x\.npz, which torchlap"):
        explain_files(tmp_path / "run", [image], ["gradcam"], out)
    assert (out / "x.npz").read_text() == "not a zip: the user's file"


def test_lap_maps_are_drawn_on_their_own_scale_the_others_by_peak(tmp_path, monkeypatch) -> None:
    # paper 000 IV.B: LAP's scores have one scale in every image; a post-hoc map has none
    import torchlap.report.plots as plots
    from torchlap.evaluate import explain as explain_module
    from torchlap.models import lapify
    from torchlap.models.wrapping import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN(3, width=4)
    lapify(model)
    facts = SimpleNamespace(in_channels=3, image_size=16)
    run = SimpleNamespace(model=model.eval(), classes=["a", "b", "c"], concept_sets=None)
    monkeypatch.setattr(explain_module, "read_run_facts", lambda run_dir: facts)
    monkeypatch.setattr(explain_module, "load_run", lambda given: run)
    drawn: list[set[str]] = []
    draw = plots.plot_explanation

    def spy(*args, **options) -> Path:
        drawn.append(set(options["absolute"]))
        return draw(*args, **options)

    monkeypatch.setattr(plots, "plot_explanation", spy)
    image = _image(tmp_path / "in" / "x.png")
    explain_files(tmp_path / "run", [image], ["gradcam", "lap"], tmp_path / "out")
    assert drawn == [{"lap"}]
