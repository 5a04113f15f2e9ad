"""``torchlap export``: a trained run's model *with its LAP maps* as one deployable graph.

A LAP model's maps are ordinary tensors of its forward pass (paper 000, III.A), so they can
leave Python with the model, which no post-hoc explainer allows. :class:`LapExportModule`
wraps a run's model (input normalisation included: it takes images in [0, 1]) and returns

* ``logits`` ``(B, num_classes)``;
* ``lap_<layer>`` ``(B, h_l, w_l)`` per LAP layer: the layer's map for the predicted class
  (:func:`torchlap.explainers.lap.select_lap_map` with the run's concept sets), at the
  layer's own resolution;
* ``lap_all`` ``(B, H, W)``: LAP All (Algorithm 1 of paper 000's supplement, the ``lap``
  explainer's default), upsampled bilinearly to the input size, as ``torchlap.explain(model,
  images, "lap")`` returns it.

Formats: ``onnx`` (``torch.onnx.export``, dynamic batch; needs the ``export`` extra),
``torchscript`` (``torch.jit.trace``) and ``exported-program`` (``torch.export``, ``.pt2``).
:func:`verify_onnx` runs the ONNX file with onnxruntime on the run's test images and reports
the largest difference from PyTorch per output.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import typer
from torch import Tensor, nn

from torchlap._checks import (
    channel_mismatch,
    check_bool,
    check_fraction,
    check_int,
    check_model_inputs,
    check_number,
    non_finite_samples,
)
from torchlap._hooks import kept_training_flags
from torchlap.cli_style import given_options, nonblank_path
from torchlap.evaluate import load_eval_data
from torchlap.explainers.lap import (
    THRESHOLDS,
    check_fits_a_layer,
    concept_mapping,
    lap_all,
    select_lap_map,
)
from torchlap.io import atomic_path, clean_stale_temps
from torchlap.layers import attention_maps, clear_attention_maps, lap_modules
from torchlap.layers._state import kept_last_maps
from torchlap.runs import (
    RunError,
    RunFacts,
    RunFileNotFoundError,
    load_run,
    read_run_facts,
    resolve_run_data,
)

__all__ = [
    "EXPORT_FORMATS",
    "MAX_EXPORT_BATCH",
    "LapExportModule",
    "export_run",
    "output_names",
    "verify_onnx",
]

logger = logging.getLogger(__name__)

#: ``--format`` values and the file suffix each one is written with
EXPORT_FORMATS = {"onnx": ".onnx", "torchscript": ".pt", "exported-program": ".pt2"}
#: the largest batch of an export: the ONNX and exported-program files take batches of 1 to
#: this many, and the example batch is traced through the model in memory (a larger one only
#: ran out of memory, after the run was loaded)
MAX_EXPORT_BATCH = 1024


def _output_name(layer: str) -> str:
    return "lap_" + layer.replace(".", "_")


class LapExportModule(nn.Module):
    """``images in [0, 1] -> (logits, lap_<layer>..., lap_all)`` (see the module docstring).

    ``concept_sets``: the run's (class -> concept heads), as the ``lap`` explainer uses them;
    ``decay``/``threshold``: LAP All's (Algorithm 1), as the ``lap`` explainer takes them:
    ``decay`` a number in (0, 1], ``threshold`` a number in [0, 1] (a str, a bool, NaN or a
    value out of range raises here, not at the first forward).
    """

    def __init__(
        self,
        model: nn.Module,
        concept_sets: Any = None,
        decay: float = 0.8,
        threshold: float = 0.5,
    ) -> None:
        super().__init__()
        # as the lap explainer checks them: NaN fails too, no float() of a str or bool
        decay = check_fraction(decay, "decay")
        threshold = check_number(
            threshold, "threshold", minimum=0.0, maximum=1.0, accepted=THRESHOLDS
        )
        self.model = model
        self.layers = list(lap_modules(model))
        if not self.layers:
            raise ValueError(
                "the model has no LAP layer, so there are no maps to export; export a LAP run "
                "(torchlap train --lap auto or a preset)"
            )
        self.concept_sets: Mapping | None = concept_mapping(concept_sets)
        if self.concept_sets is not None:
            check_fits_a_layer(self.concept_sets, dict(lap_modules(model)))
        self.decay = decay
        self.threshold = threshold

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        """Logits, each LAP layer's map for the predicted class, and LAP All (input size).
        The wrapped model's last maps (its :func:`~torchlap.layers.attention_maps`) are left as
        they were, also when the forward raises: they are the caller's.

        ``images``: a floating-point ``(B, C, H, W)`` tensor of the model's channels, device
        and dtype, else a TypeError/ValueError naming ``images`` (finite pixels are not
        required: the module is traced with symbolic inputs)."""
        _check_module_images(self.model, images)
        with kept_last_maps(self.model):
            clear_attention_maps(self.model)  # this pass's layers only
            try:
                logits = self.model(images)
            except RuntimeError as error:  # torch names a layer's weight, not the images
                message = channel_mismatch(self.model, images, error)
                if message is None:
                    raise
                raise ValueError(message) from error
            found = attention_maps(self.model)
        missing = [name for name in self.layers if name not in found]
        if missing:
            raise ValueError(
                f"the LAP layer(s) {missing} did not run in the model's forward pass, so they "
                "have no map to export; export a model whose every LAP layer runs (remove the "
                "unused ones)"
            )
        predicted = logits.argmax(dim=1)
        num_classes = logits.shape[1]
        maps = [
            select_lap_map(found[name], predicted, num_classes, None, self.concept_sets)
            for name in self.layers
        ]
        # NaN pixels give NaN maps: integrated as the exported graph does, not refused
        integrated = lap_all(maps, self.decay, self.threshold, "algorithm1", check_finite=False)
        size = (images.shape[-2], images.shape[-1])
        full = F.interpolate(integrated[:, None], size=size, mode="bilinear", align_corners=False)
        return (logits, *maps, full[:, 0])


def _check_module_images(model: nn.Module, images: object) -> None:
    """``images`` as :meth:`LapExportModule.forward` takes them: a floating-point
    ``(B, C, H, W)`` tensor with H, W >= 1 on the model's device and of its dtype (the
    explainers' checks but the finite pixels, which a traced input has no values for)."""
    if not isinstance(images, Tensor):
        raise TypeError(
            f"images must be a floating-point torch.Tensor (B, C, H, W) in [0, 1], got "
            f"{type(images).__name__}"
        )
    if images.dim() != 4:
        raise ValueError(
            f"images must have shape (B, C, H, W), got {tuple(images.shape)} ({images.dim()} "
            "dimensions)"
        )
    if not images.is_floating_point():
        raise TypeError(
            f"images must be a floating-point tensor in [0, 1], got dtype {images.dtype} "
            "(convert with images.float() / 255 for 8-bit pixels)"
        )
    if images.shape[2] == 0 or images.shape[3] == 0:
        raise ValueError(f"images must have H, W >= 1, got shape {tuple(images.shape)}")
    check_model_inputs(model, images)


def output_names(module: LapExportModule) -> list[str]:
    """``["logits", "lap_<layer>", ..., "lap_all"]`` in the order ``forward`` returns them."""
    if not isinstance(module, LapExportModule):
        raise TypeError(f"module must be a LapExportModule, got {type(module).__name__}")
    return ["logits", *(_output_name(n) for n in module.layers), "lap_all"]


def _atomic(out: Path, write: Any, replace: bool) -> None:
    """``write(temporary_path)`` through :func:`torchlap.io.atomic_path` (fsync, the usual
    mode, then a rename onto ``out``: never a half-written file). ``replace=False``: a file
    someone created at ``out`` during the export is left as it is (FileExistsError)."""
    try:
        with atomic_path(out, replace=replace) as temporary:
            try:
                write(temporary)
            finally:
                data = temporary.with_name(temporary.name + ".data")  # ONNX external weights
                external = data.exists()
                data.unlink(missing_ok=True)
            if external:
                raise ValueError(f"{out}: the model is too large for a single ONNX file")
    except FileExistsError:
        raise FileExistsError(
            f"--out {out} was created by someone else while torchlap exported; it is left as "
            "it is: pass --overwrite to replace it, or another --out"
        ) from None


def _publish(out: Path, write: Any, overwrite: bool) -> bool:
    """Write ``out`` with ``write(temporary_path)``; return whether an existing file was
    replaced. First the temporary files of killed torchlap processes in ``out``'s folder are
    removed. Without ``overwrite``, a file someone created at ``out`` during the export is
    refused (FileExistsError), never replaced."""
    clean_stale_temps(out.parent, recursive=False)  # temporaries of killed exports
    replaced = overwrite and (out.exists() or out.is_symlink())
    _atomic(out, write, replace=overwrite)
    return replaced


def export_run(
    run_dir: str | os.PathLike[str] | RunFacts,
    out: str | os.PathLike[str],
    format: str = "onnx",
    overwrite: bool = False,
    batch_size: int = 2,
) -> tuple[Path, LapExportModule, Tensor]:
    """Write the run's :class:`LapExportModule` to ``out`` in ``format`` (``run_dir``: a run
    folder, or its :class:`~torchlap.runs.RunFacts` read already); return the path, the
    module and the example images it was traced with (random images in [0, 1] of the run's
    size: the export depends only on shapes). ONNX and exported-program files take any batch
    size from 1 to :data:`MAX_EXPORT_BATCH` (their example batch is ``max(batch_size, 2)``:
    torch.export fixes a batch of 1 as a constant); a TorchScript file (traced) takes batches of
    ``batch_size`` only. ``batch_size``: an int from 1 to :data:`MAX_EXPORT_BATCH` (1024).

    Refuses an existing ``out`` (a symlink too, even one to nothing) unless ``overwrite``
    (which replaces the link, not its target) and a wrong suffix for the format. Without
    ``overwrite`` a file someone creates at ``out`` while the export runs is left as it is
    (FileExistsError; nothing is written). Removes the temporary files killed torchlap
    processes left in ``out``'s folder. ``overwrite`` must be a bool (``"no"`` is refused,
    never taken as true).
    """
    overwrite = check_bool(overwrite, "overwrite")
    check_batch_size(batch_size)
    out = _checked_out(Path(out), format, overwrite)
    run = load_run(run_dir)
    module = LapExportModule(run.model.eval(), run.concept_sets).eval()
    generator = torch.Generator().manual_seed(0)
    if format != "torchscript":  # a dynamic batch dimension is traced from a batch of 2 or more
        batch_size = max(batch_size, 2)
    shape = (batch_size, run.in_channels, run.image_size, run.image_size)
    example = torch.rand(shape, generator=generator)
    names = output_names(module)
    with torch.no_grad():
        if format == "onnx":

            def write(path: Path) -> None:
                batch = torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)
                torch.onnx.export(
                    module,
                    (example,),
                    str(path),
                    input_names=["images"],
                    output_names=names,
                    dynamic_shapes={"images": {0: batch}},
                    dynamo=True,
                    external_data=False,
                    verbose=False,
                )

        elif format == "torchscript":

            def write(path: Path) -> None:
                # traced from torch.export's graph of PyTorch ops: the LAP pooling is a custom
                # autograd.Function, which torch.jit.trace cannot record itself
                # (so the file takes batches of exactly the traced size, ``batch_size``)
                program = torch.export.export(module, (example,), strict=False)
                traced = torch.jit.trace(program.module(), (example,), check_trace=False)
                with open(path, "wb") as handle:
                    torch.jit.save(traced, handle)

        else:

            def write(path: Path) -> None:
                batch = torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)
                program = torch.export.export(
                    module, (example,), dynamic_shapes={"images": {0: batch}}, strict=False
                )
                # a handle: the temporary name does not end in .pt2, which torch would warn of
                with open(path, "wb") as handle:
                    torch.export.save(program, handle)

        if _publish(out, write, overwrite):  # --overwrite: say which file torchlap replaced
            logger.warning("--overwrite: replaced %s", out)
    logger.info("exported %s (%s) with outputs %s", out, format, ", ".join(names))
    return out, module, example


def check_batch_size(batch_size: object, name: str = "batch_size") -> int:
    """``batch_size`` as an int from 1 to :data:`MAX_EXPORT_BATCH` (``TypeError`` for a
    non-int or a bool, ``ValueError`` out of range), checked before the run is loaded."""
    try:
        return check_int(batch_size, name, minimum=1, maximum=MAX_EXPORT_BATCH)
    except ValueError as error:
        raise ValueError(
            f"{error} (ONNX and exported-program files take batches of 1 to {MAX_EXPORT_BATCH}; "
            "the example batch is traced in memory)"
        ) from None


def _checked_out(out: Path, format: str, overwrite: bool) -> Path:
    """``out`` if ``format`` is known, ``out`` has its suffix and may be written (a new file,
    or an existing one with ``overwrite``); the errors say what is accepted."""
    if format not in EXPORT_FORMATS:
        raise ValueError(
            f"unknown --format {format!r}; expected one of {', '.join(EXPORT_FORMATS)}"
        )
    suffix = EXPORT_FORMATS[format]
    if out.suffix != suffix:
        raise ValueError(f"--out {out}: the {format} file must end with {suffix}")
    if out.is_symlink() and not out.exists() and not overwrite:
        # exists() follows the link: a dangling one passed, and publishing refused it at the end
        raise FileExistsError(
            f"--out {out} is a symlink (to {os.readlink(out)}, which does not exist); pass "
            "--overwrite to replace the link, or another --out"
        )
    if out.is_dir():  # first: --overwrite does not replace a folder
        raise IsADirectoryError(f"--out {out} is a folder; pass a file path ending with {suffix}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"--out {out} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        what = "is a file, not a folder" if out.parent.exists() else "does not exist"
        raise FileNotFoundError(f"--out {out}: {out.parent} {what}")
    if format == "onnx":
        _require_onnx()
    return out


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise ImportError(
            "--format onnx needs onnx and onnxscript: pip install 'torchlap[export]'"
        ) from None


def _require_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or an ImportError naming the extra that installs it."""
    try:
        import onnxruntime
    except ImportError:
        raise ImportError(
            "verifying an ONNX export needs onnxruntime: pip install 'torchlap[export]' "
            "(or pass --verify-images 0)"
        ) from None
    return onnxruntime


def verify_onnx(
    path: str | os.PathLike[str], module: LapExportModule, images: Tensor, batch_size: int = 16
) -> dict[str, float]:
    """Largest absolute difference per output between onnxruntime on ``path`` and PyTorch's
    ``module`` on ``images`` (batches of ``batch_size``, an int from 1 to
    :data:`MAX_EXPORT_BATCH`). ``module`` runs in eval mode, as it was exported; every
    module's train/eval flag is given back afterwards, also when the check raises.

    ``images``: a non-empty ``(B, C, H, W)`` floating-point tensor of finite pixels of the
    file's input shape, else ValueError/TypeError before onnxruntime runs. An output whose
    shapes differ (never compared by broadcasting) or whose difference is NaN (a NaN on one
    side only) gives ``nan``, never a difference that looks like agreement.
    """
    check_int(batch_size, "batch_size", minimum=1, maximum=MAX_EXPORT_BATCH)
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such ONNX file")
    onnxruntime = _require_onnxruntime()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    _check_verify_images(images, session.get_inputs()[0].shape, path)
    names = output_names(module)
    worst = dict.fromkeys(names, 0.0)
    # eval mode (as the file was exported), every module's flag given back, also on errors
    with torch.no_grad(), kept_training_flags(module):
        module.eval()
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].float()
            expected = module(batch)  # on the images' device
            # onnxruntime takes numpy arrays on the host: the one copy to and from the host
            feed = batch.detach().to("cpu", copy=False).numpy()
            got = session.run(names, {"images": feed})
            for name, want, have in zip(names, expected, got, strict=True):
                have = torch.from_numpy(have).to(want.device)
                if want.shape != have.shape:  # broadcasting would compare other pixels
                    worst[name] = math.nan
                    continue
                diff = float((want - have).abs().max()) if want.numel() else 0.0
                if math.isnan(diff) or math.isnan(worst[name]):
                    worst[name] = math.nan  # max(0.0, nan) is 0.0: NaN is kept
                else:
                    worst[name] = max(worst[name], diff)
    return worst


def _check_verify_images(images: object, input_shape: Any, path: object) -> None:
    """``images`` as :func:`verify_onnx` takes them: a non-empty floating (B, C, H, W) tensor
    of finite pixels whose (C, H, W) are the ONNX file's (``input_shape``, symbolic batch)."""
    if not isinstance(images, Tensor) or not images.is_floating_point() or images.dim() != 4:
        got = (
            f"{images.dtype} of shape {tuple(images.shape)}"
            if isinstance(images, Tensor)
            else type(images).__name__
        )
        raise TypeError(f"images must be a floating-point (B, C, H, W) tensor, got {got}")
    if len(images) == 0:
        raise ValueError(
            "images hold no image (shape (0, ...)); verifying needs at least one, or the "
            "differences would be 0 without any comparison"
        )
    fixed = [(i, d) for i, d in enumerate(input_shape[1:], 1) if isinstance(d, int)]
    if any(images.shape[i] != d for i, d in fixed):
        wanted = ", ".join(str(d) for d in input_shape[1:])
        raise ValueError(
            f"images have shape {tuple(images.shape)}, but {path} takes (B, {wanted}) images"
        )
    bad = non_finite_samples(images)
    if bad:
        raise ValueError(
            f"images {bad} (batch indices) hold NaN or infinite pixels; only finite images "
            "are accepted"
        )


#: how to export without the ONNX check, named by every error of its test images
_SKIP_CHECK = (
    "torchlap export checks the ONNX file on the run's test images; pass --verify-images 0 to "
    "export without that check"
)


def run_test_images(run_dir: str | os.PathLike[str] | RunFacts, max_images: int = 32) -> Tensor:
    """Up to ``max_images`` images of the run's own test split, as the model sees them (read
    with the run's facts: its model is not built; ``run_dir`` may be those facts).

    Raises :class:`~torchlap.runs.RunError` (a ``ValueError``; also a ``FileNotFoundError``
    for missing data) naming the data and how to export without the check."""
    run = run_dir if isinstance(run_dir, RunFacts) else read_run_facts(run_dir)
    run_dir = run.run_dir
    data = run.config.get("train", {}).get("data")
    if not data:
        raise RunError(
            f"{run_dir}/config.json names no data to verify the export on; {_SKIP_CHECK}"
        )
    # (a relative folder of an older run: resolved, or every place tried named)
    data = resolve_run_data(run_dir, run.config, _SKIP_CHECK)
    try:
        return load_eval_data(run, data, "test", max_images).images
    except (ValueError, FileNotFoundError) as error:
        kind = RunFileNotFoundError if isinstance(error, FileNotFoundError) else RunError
        raise kind(f"{error}; {_SKIP_CHECK}") from error


def _check_command(ctx: Any, format: str, batch_size: int, verify_images: int) -> None:
    """``torchlap export``'s numbers, before any work: ``--batch-size`` from 1 to
    :data:`MAX_EXPORT_BATCH`, ``--verify-images`` >= 0, and > 0 given with a format other than
    ONNX (only an ONNX file is verified) refused instead of ignored."""
    try:
        check_batch_size(batch_size, "--batch-size")
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    if verify_images < 0:
        raise typer.BadParameter(f"--verify-images must be >= 0, got {verify_images}")
    if (
        "verify_images" in given_options(ctx)
        and verify_images > 0
        and format != "onnx"
        and format in EXPORT_FORMATS
    ):
        raise typer.BadParameter(
            f"--verify-images checks an ONNX file with onnxruntime: it needs --format onnx, and "
            f"a --format {format} file is not verified; drop --verify-images (or pass 0)"
        )


def register_export(app: Any) -> None:
    """Add ``torchlap export`` to the ``torchlap`` command."""

    @app.command("export")
    def export_command(
        ctx: typer.Context,
        run: str = typer.Option(
            ..., "--run", metavar="PATH", help="A LAP run folder written by `torchlap train`."
        ),
        format: str = typer.Option(
            "onnx", "--format", help="onnx, torchscript or exported-program."
        ),
        out: str = typer.Option(
            ..., "--out", metavar="PATH", help="File to write (.onnx, .pt for torchscript, .pt2)."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
        batch_size: int = typer.Option(
            1,
            "--batch-size",
            help="Batch of the example input, 1 to 1024; a TorchScript file takes this batch "
            "size only (ONNX and exported-program files take any batch from 1 to 1024, the "
            "example is traced in memory).",
        ),
        verify_images: int = typer.Option(
            32,
            "--verify-images",
            help="--format onnx only: test images of the run to compare onnxruntime with "
            "PyTorch on (0: skip).",
        ),
    ) -> None:
        """Export a LAP run's model with its maps: logits, each LAP layer's map and LAP All.

        Outputs `logits`, `lap_<layer>` (each LAP layer's map for the predicted class) and
        `lap_all` (input size); the input `images` is in [0, 1] (normalisation included).
        ONNX exports are checked with onnxruntime against PyTorch on the run's test images.

        Example: `torchlap export --run runs/bb-lap --format onnx --out bb-lap.onnx`

        Cost: about 10-40 s on a 2-core CPU for a ResNet18 at 64 px (the ONNX check included).
        """
        # everything that can refuse runs before the file is written: the numbers, --out and
        # --format, then the ONNX check's onnxruntime and test images (a missing data folder)
        _check_command(ctx, format, batch_size, verify_images)
        # (as text: typer turns "" into Path("."); ValueErrors: the command's handler, exit 2)
        run_dir = Path(nonblank_path(run, "--run", "a run folder"))
        out_file = Path(nonblank_path(out, "--out", "the file to write"))
        _checked_out(out_file, format, overwrite)
        verify = format == "onnx" and verify_images > 0
        facts = read_run_facts(run_dir)  # (config.json read once; the data before the model)
        if verify:
            _require_onnxruntime()
            images = run_test_images(facts, verify_images)
        path, module, _ = export_run(
            facts, out_file, format, overwrite=overwrite, batch_size=batch_size
        )
        typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB; outputs: "
                   f"{', '.join(output_names(module))})")  # fmt: skip
        if verify:
            worst = verify_onnx(path, module, images)
            typer.echo(
                "onnxruntime vs PyTorch on the run's test images, max |difference|: "
                + ", ".join(f"{name} {value:.2e}" for name, value in worst.items())
            )
