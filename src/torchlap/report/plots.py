"""Figures of the report (matplotlib, Agg), each written atomically as a PNG.

- :func:`plot_keep_k`: keep-k% curves like paper 000, Fig. 4 (top-1 and top-5 agreement
  with the prediction for each method as k grows);
- :func:`plot_iou_bars`: IoU by thresholding and by top-scored selection per method
  (paper 000, Table II as bars);
- :func:`plot_overlays`: input images with the annotated region's contour and each method's
  map overlaid (paper 000, Fig. 2);
- :func:`plot_lap_layers`: one panel per LAP layer, one color per concept head (paper 000,
  Fig. 3).

Figures are built with :class:`matplotlib.figure.Figure` and an Agg canvas instead of
``pyplot``: nothing is registered in pyplot's global figure list (``plt.get_fignums()`` stays
empty, also on error), the user's interactive backend is never switched, and the functions are
safe to call from worker threads.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.patches import Patch
from torch import Tensor

from torchlap._checks import check_fraction, check_has_values
from torchlap.report._common import (
    as_runs,
    method_display_name,
    method_facts,
    metric_value,
    order_methods,
    section,
)
from torchlap.report._figure import (
    _new_figure,
    _png_path,
    _save,
    is_torchlap_figure,
)

__all__ = [
    "EXAMPLE_KINDS",
    "example_rows",
    "is_torchlap_figure",
    "plot_iou_bars",
    "plot_keep_k",
    "plot_lap_layers",
    "plot_overlays",
]

_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">")


# ------------------------------------------------------------------------------- helpers


def _method_colors(methods: Sequence[str]) -> dict[str, Any]:
    palette = colormaps["tab10" if len(methods) <= 10 else "tab20"]
    return {method: palette(i % palette.N) for i, method in enumerate(methods)}


def _as_percent(value: float | None) -> float:
    return math.nan if value is None else 100.0 * value


# ------------------------------------------------------------------------------ keep-k%

_AGREEMENT_KEY = re.compile(r"top(\d+)_vs_(prediction|label)")


def _curves(
    entry: Mapping[str, Any], reference: str
) -> tuple[list[float], dict[int, list[float]]] | None:
    """(ks, {t: agreement in % per k}) of one method's keep_top_k results."""
    keep = entry.get("keep_top_k") or {}
    if not keep:
        return None
    ks = sorted(keep, key=float)
    by_t: dict[int, list[float]] = {}
    for key in {key for k in ks for key in keep[k]}:
        match = _AGREEMENT_KEY.fullmatch(key)
        if match and match.group(2) == reference:
            t = int(match.group(1))
            by_t[t] = [_as_percent(metric_value(keep[k].get(key))) for k in ks]
    return [float(k) for k in ks], by_t


def plot_keep_k(
    results: object,
    path: str | os.PathLike[str],
    *,
    reference: str = "prediction",
    overwrite: bool = False,
) -> Path:
    """keep-k% faithfulness curves (paper 000, Fig. 4): x = percentage k of top-scored pixels
    kept (the rest zeroed), y = how often the top-1 (left) and top-5 (right) classes of the
    modified image contain the original prediction (``reference="label"``: the label). One
    line per method (and line style per run when several runs are given). With fewer than 5
    classes the right panel shows the top-t stored in the results. Returns ``path``."""
    target = _png_path(path, overwrite)
    if reference not in ("prediction", "label"):
        raise ValueError(f"reference must be 'prediction' or 'label', got {reference!r}")
    runs = as_runs(results, "results")
    facts = method_facts(runs.values())
    series: list[tuple[str, str, list[float], dict[int, list[float]]]] = []
    for run_name, run in runs.items():
        faith = section(run, "faithfulness")
        for method in order_methods(faith, facts):
            curves = _curves(faith[method], reference)
            if curves is not None and curves[1]:
                series.append((run_name, method, *curves))
    if not series:
        raise ValueError(
            f"no keep_top_k results with 'top<t>_vs_{reference}' entries to plot; run the "
            "evaluation with keep-k% faithfulness first"
        )
    wider = sorted({t for *_, by_t in series for t in by_t if t > 1})
    panels = [1, *wider[-1:]] if wider else [1]
    methods = order_methods((method for _, method, _, _ in series), facts)
    colors = _method_colors(methods)
    run_names = list(runs)
    figure = _new_figure(4.2 * len(panels) + 0.4, 3.9)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, t in zip(axes, panels, strict=True):
        for run_name, method, ks, by_t in series:
            if t == 1:
                ys = by_t.get(1)
            else:  # a run with fewer classes stores a smaller top-t: it joins this panel
                wide = [u for u in by_t if u > 1]
                ys = by_t[max(wide)] if wide else None
            if ys is None:
                continue
            label = method_display_name(method, facts)
            if len(run_names) > 1:
                label = f"{run_name} · {label}"
            index = run_names.index(run_name)
            ax.plot(
                ks,
                ys,
                label=label,
                color=colors[method],
                linestyle=_LINESTYLES[index % len(_LINESTYLES)],
                marker=_MARKERS[methods.index(method) % len(_MARKERS)],
                markersize=4,
            )
        ax.set_title(f"Top-{t} agreement with the {reference}", fontsize=10)
        ax.set_xlabel("k (% of top-scored pixels kept)")
        ax.set_ylabel("agreement (%)")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)))
    return _save(figure, target, overwrite)


# ------------------------------------------------------------------------------ IoU bars


def plot_iou_bars(
    results: object, path: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Grouped bars of IoU by thresholding and by top-scored selection per method (paper
    000, Table II), one panel per run; undefined values are marked ``n/a``. Returns ``path``."""
    target = _png_path(path, overwrite)
    runs = as_runs(results, "results")
    facts = method_facts(runs.values())
    panels = [(name, run) for name, run in runs.items() if section(run, "localization")]
    if not panels:
        raise ValueError("no localization results to plot (every run lacks 'localization')")
    kinds = (("iou_threshold", "Thresholding"), ("iou_topk", "Top-scored selection"))
    palette = colormaps["tab10"]
    n_methods = max(len(section(run, "localization")) for _, run in panels)
    figure = _new_figure(max(4.5, 0.9 * n_methods + 2.0), 2.9 * len(panels) + 0.5)
    axes = figure.subplots(len(panels), 1, squeeze=False, sharey=True)[:, 0]
    width = 0.8 / len(kinds)
    for ax, (run_name, run) in zip(axes, panels, strict=True):
        localization = section(run, "localization")
        methods = order_methods(localization, facts)
        for j, (key, label) in enumerate(kinds):
            offsets = [i - 0.4 + width * (j + 0.5) for i in range(len(methods))]
            values = [_as_percent(metric_value(localization[m].get(key))) for m in methods]
            ax.bar(offsets, values, width, label=label, color=palette(j))
            for x, value, method in zip(offsets, values, methods, strict=True):
                if math.isnan(value):
                    text = "n/a" if key in localization[method] else "-"
                    ax.text(x, 1, text, ha="center", va="bottom", fontsize=7, rotation=90)
        ax.set_xticks(range(len(methods)), [method_display_name(m, facts) for m in methods])
        ax.set_ylabel("IoU (%)")
        ax.set_ylim(0, 100)
        ax.set_title(run_name, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=8)
    return _save(figure, target, overwrite)


# ------------------------------------------------------------------------------ overlays

EXAMPLE_KINDS = ("best", "median", "worst")


def example_rows(examples: Mapping[str, int]) -> list[tuple[int, str]]:
    """Rows of an overlay figure from ``results["examples"][method]`` (kind -> image index):
    ``(index, title)`` in the order best, median, worst (the caption's order), one row per
    distinct image; an image that is several kinds at once is titled e.g. ``"best = median"``.
    Kinds other than these three follow in their given order."""
    if not isinstance(examples, Mapping):
        raise TypeError(f"examples must be a dict of kind -> image index, got {type(examples)}")
    kinds = [k for k in EXAMPLE_KINDS if k in examples]
    kinds += [k for k in examples if k not in EXAMPLE_KINDS]
    rows: dict[int, list[str]] = {}
    for kind in kinds:
        index = examples[kind]
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"examples[{kind!r}] must be an image index >= 0, got {index!r}")
        rows.setdefault(index, []).append(str(kind))
    return [(index, " = ".join(names)) for index, names in rows.items()]


def _check_images(images: object, name: str = "images") -> Tensor:
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, C, H, W), got {type(images)}")
    if images.dim() != 4 or not images.is_floating_point() or images.shape[1] not in (1, 3):
        raise ValueError(
            f"{name} must be a floating tensor of shape (N, C, H, W) with C = 1 or 3, got "
            f"shape {tuple(images.shape)} and dtype {images.dtype}"
        )
    if images.numel() == 0:
        raise ValueError(f"{name} must hold at least one image of at least one pixel")
    if not bool(torch.isfinite(check_has_values(images, name)).all()):
        raise ValueError(f"{name} contains nan or inf values")
    low, high = float(images.min()), float(images.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(
            f"{name} must be in [0, 1] (undo the normalization before plotting), got values "
            f"in [{low:.3g}, {high:.3g}]"
        )
    return images.detach().float().cpu().clamp(0, 1)


def _check_maps(maps: object, n: int, name: str) -> Tensor:
    if not isinstance(maps, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, H, W), got {type(maps)}")
    if maps.dim() != 3 or maps.shape[0] != n or not maps.is_floating_point():
        raise ValueError(
            f"{name} must be a floating tensor of shape (N, H, W) with N = {n} (one map per "
            f"image), got shape {tuple(maps.shape)} and dtype {maps.dtype}"
        )
    if not bool(torch.isfinite(maps).all()):
        raise ValueError(f"{name} contains nan or inf values")
    return maps.detach().float().cpu()


def _resize(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """(N, h, w) -> (N, H, W) by bilinear interpolation (maps at layer resolution)."""
    if tuple(maps.shape[-2:]) == size:
        return maps
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def _one_map(value: object, name: str, size: tuple[int, int]) -> Tensor:
    """One image's (H, W) or (1, H, W) map checked and resized to ``size``: (H', W')."""
    if isinstance(value, Tensor) and value.dim() == 2:
        value = value[None]
    return _resize(_check_maps(value, 1, name), size)[0]


def _display_image(ax: Any, image: Tensor) -> None:
    """Show a (C, H, W) image in [0, 1]."""
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")


def _contour(ax: Any, mask: Tensor | None) -> None:
    # a constant mask has no contour (and matplotlib warns), so it is skipped
    if mask is not None and bool(mask.any()) and not bool(mask.all()):
        ax.contour(mask.float().numpy(), levels=[0.5], colors="lime", linewidths=1.2)


def _clear_ticks(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _check_display(
    cmap: object, alpha: object, absolute: object, methods: Collection[str]
) -> frozenset[str]:
    """The overlay options checked (colormap, blending weight, the methods drawn on their own
    scale); returns ``absolute`` as a set of method names."""
    if not isinstance(cmap, str) or cmap not in colormaps:
        raise ValueError(f"unknown colormap {cmap!r}; use a matplotlib name such as 'jet'")
    check_fraction(alpha, "alpha")  # not a bool: True is no blending weight
    if isinstance(absolute, (str, bytes)) or not isinstance(absolute, Collection):
        raise TypeError(
            f"absolute must be a collection of method names (e.g. {{'lap'}}), got {absolute!r}"
        )
    unknown = sorted(str(name) for name in absolute if name not in methods)
    if unknown:
        raise ValueError(
            f"absolute names methods without maps here: {', '.join(unknown)}; "
            f"the maps are of: {', '.join(methods)}"
        )
    return frozenset(absolute)


def _display_scale(maps: Tensor, absolute: bool) -> Tensor:
    """(N, H, W) maps on the colormap's [0, 1]: each divided by its own peak (when > 0), or,
    for a method whose scores have one meaning in every image (``absolute``: LAP's
    probabilities, read at 0.5 in every image, paper 000 IV.B), as they are; negative values
    are shown as 0, values above 1 as 1."""
    if not absolute:
        peak = maps.amax(dim=(-2, -1), keepdim=True)
        maps = maps / torch.where(peak > 0, peak, 1.0)
    return maps.clamp(0, 1)


def plot_overlays(
    images: Tensor,
    maps_by_method: Mapping[str, Tensor],
    masks: Tensor | None,
    titles: Sequence[str] | None,
    path: str | os.PathLike[str],
    *,
    cmap: str = "jet",
    alpha: float = 0.5,
    names: Mapping[str, str] | None = None,
    absolute: Collection[str] = (),
    overwrite: bool = False,
) -> Path:
    """Grid of explanations like paper 000, Fig. 2: one row per image; the first column is
    the input with the annotated region's contour (green), then one column per method with
    its map overlaid (``cmap`` at ``alpha``) and the same contour.

    ``images``: (N, C, H, W) in [0, 1], C = 1 or 3. ``maps_by_method``: method name ->
    (N, h, w) maps; maps at another resolution are resized bilinearly to (H, W); each map is
    divided by its maximum for display (as for thresholding, paper 000 section IV; negative
    values are shown as 0). ``masks``: (N, H, W) bool or ``None``. ``titles``: one row title
    per image (e.g. label and prediction) or ``None``. ``names``: the methods' display names
    (``{"gradcam": "GC"}``; a method not in it is shown by its name). ``absolute``: the
    methods whose maps are drawn as they are on [0, 1] (values clipped), not divided by their
    maximum: scores with one meaning in every image, like LAP's probabilities (paper 000 IV.B:
    "the importance scores have the same scale in all samples"; ``torchlap evaluate`` passes
    the methods with a native threshold). Returns ``path``.
    """
    target = _png_path(path, overwrite)
    images = _check_images(images)
    n, _, height, width = images.shape
    if not isinstance(maps_by_method, Mapping) or not maps_by_method:
        raise ValueError("maps_by_method must be a non-empty dict of method name -> (N, H, W)")
    maps = {}
    for method, method_maps in maps_by_method.items():
        checked = _check_maps(method_maps, n, f"maps_by_method[{method!r}]")
        maps[str(method)] = _resize(checked, (height, width))
    if masks is not None:
        if not isinstance(masks, Tensor) or masks.dtype != torch.bool:
            raise TypeError("masks must be a bool tensor of shape (N, H, W) or None")
        if tuple(masks.shape) != (n, height, width):
            raise ValueError(
                f"masks must have shape (N, H, W) = {(n, height, width)}, got {tuple(masks.shape)}"
            )
        masks = check_has_values(masks, "masks").detach().cpu()
    if titles is not None:
        if isinstance(titles, str) or len(titles) != n:
            raise ValueError(f"titles must be a list of {n} strings (one per image) or None")
        titles = [str(t) for t in titles]
    own_scale = _check_display(cmap, alpha, absolute, list(maps))
    maps = {method: _display_scale(m, method in own_scale) for method, m in maps.items()}

    n_columns = 1 + len(maps)
    figure = _new_figure(1.9 * n_columns + 0.3, 1.95 * n + 0.4)
    axes = figure.subplots(n, n_columns, squeeze=False)
    for row in range(n):
        mask = masks[row] if masks is not None else None
        ax = axes[row, 0]
        _display_image(ax, images[row])
        _contour(ax, mask)
        _clear_ticks(ax)
        if titles is not None:
            ax.set_ylabel(titles[row], fontsize=8)
        for column, method_maps in enumerate(maps.values(), start=1):
            ax = axes[row, column]
            _display_image(ax, images[row])
            ax.imshow(method_maps[row].numpy(), cmap=cmap, alpha=alpha, vmin=0, vmax=1)
            _contour(ax, mask)
            _clear_ticks(ax)
    axes[0, 0].set_title("Input", fontsize=9)
    for column, method in enumerate(maps, start=1):
        axes[0, column].set_title((names or {}).get(method, method), fontsize=9)
    return _save(figure, target, overwrite)


# ---------------------------------------------------------------------------- LAP layers


def _draw_concepts(
    ax: Any, gray: Tensor, maps: Tensor, size: tuple[int, int], palette: Any, max_concepts: int
) -> tuple[Tensor, Tensor]:
    """Draw one layer's concept heads over a gray image; return the heads shown and colors."""
    heads = torch.arange(maps.shape[0])
    if maps.shape[0] > max_concepts:
        peaks = maps.amax(dim=(1, 2))
        heads = torch.sort(torch.topk(peaks, max_concepts).indices).values
    shown = _resize(maps[heads], size)  # (k, H, W)
    colors = torch.tensor(
        [palette(i % palette.N)[:3] for i in range(len(heads))], dtype=torch.float32
    )
    # probability-weighted color mix per pixel, opacity from the strongest head
    weights = shown / shown.sum(dim=0, keepdim=True).clamp_min(1e-8)
    rgb = torch.einsum("khw,kc->hwc", weights, colors)
    opacity = shown.amax(dim=0, keepdim=True).permute(1, 2, 0) * 0.85
    ax.imshow(gray.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.imshow(torch.cat([rgb, opacity], dim=2).numpy(), interpolation="nearest")
    _clear_ticks(ax)
    return heads, colors


def plot_explanation(
    image: Tensor,
    maps_by_method: Mapping[str, Tensor],
    lap_concepts: Mapping[str, Tensor] | None,
    title: str,
    path: str | os.PathLike[str],
    *,
    cmap: str = "jet",
    alpha: float = 0.5,
    names: Mapping[str, str] | None = None,
    absolute: Collection[str] = (),
    overwrite: bool = False,
) -> Path:
    """One image explained (``torchlap explain``): the input, then each method's map overlaid
    (divided by its maximum, as in :func:`plot_overlays`); below, when the model has LAP layers,
    each layer's concept heads in their own colors (paper 000, Fig. 3). ``title`` carries the
    predicted and true class; ``names``: the methods' display names and ``absolute`` the
    methods drawn on their own [0, 1] scale (both as in :func:`plot_overlays`). Returns
    ``path``.
    """
    target = _png_path(path, overwrite)
    if isinstance(image, Tensor) and image.dim() == 3:
        image = image[None]
    image = _check_images(image, "image")[0]
    size = (image.shape[1], image.shape[2])
    maps = {m: _one_map(v, m, size) for m, v in maps_by_method.items()}
    own_scale = _check_display(cmap, alpha, absolute, list(maps))
    layers = {k: v.detach().float().cpu().clamp(0, 1) for k, v in (lap_concepts or {}).items()}
    n_cols = max(1 + len(maps), len(layers), 1)
    n_rows = 2 if layers else 1
    figure = _new_figure(2.4 * n_cols + 0.3, 2.7 * n_rows + 0.5)
    axes = figure.subplots(n_rows, n_cols, squeeze=False)
    for ax in axes.flatten():
        ax.set_axis_off()
    _display_image(axes[0, 0], image)
    axes[0, 0].set_axis_on()
    _clear_ticks(axes[0, 0])
    axes[0, 0].set_title("input", fontsize=9)
    for ax, (method, method_map) in zip(axes[0, 1:], maps.items(), strict=False):
        ax.set_axis_on()
        _display_image(ax, image)
        shown = _display_scale(method_map, method in own_scale)
        ax.imshow(shown.numpy(), cmap=cmap, alpha=alpha, vmin=0, vmax=1)
        _clear_ticks(ax)
        ax.set_title((names or {}).get(method, method), fontsize=9)
    if layers:
        palette = colormaps["tab10"]
        gray = image.mean(dim=0)
        for ax, (layer, concepts) in zip(axes[1], layers.items(), strict=False):
            ax.set_axis_on()
            _draw_concepts(ax, gray, concepts, size, palette, 10)
            ax.set_title(f"LAP {layer}", fontsize=8)
    figure.suptitle(title, fontsize=10)
    return _save(figure, target, overwrite)


def plot_lap_layers(
    image: Tensor,
    concept_maps: Mapping[str, Tensor],
    path: str | os.PathLike[str],
    *,
    concept_names: Sequence[str] | None = None,
    max_concepts: int = 10,
    title: str | None = None,
    overwrite: bool = False,
) -> Path:
    """LAP concept maps of one image, like paper 000, Fig. 3: one panel per LAP layer, the
    image in gray with each concept head in its own color, opacity = the head's probability.

    ``image``: (C, H, W) or (1, C, H, W) in [0, 1]. ``concept_maps``: layer name -> (h, H', W')
    concept probabilities in [0, 1] (``LapMaps.concepts[i]``), resized bilinearly to the image.
    Where heads overlap, colors mix in proportion to their probabilities. Layers with more
    than ``max_concepts`` heads (at most 20) show the heads with the highest peak
    probability. ``concept_names`` label the heads in the legends. Returns ``path``.
    """
    target = _png_path(path, overwrite)
    if isinstance(image, Tensor) and image.dim() == 3:
        image = image[None]
    image = _check_images(image, "image")[0]
    if not isinstance(concept_maps, Mapping) or not concept_maps:
        raise ValueError("concept_maps must be a non-empty dict of layer name -> (h, H, W)")
    if isinstance(max_concepts, bool) or not isinstance(max_concepts, int):
        raise TypeError(f"max_concepts must be an int in [1, 20], got {max_concepts!r}")
    if not 1 <= max_concepts <= 20:
        raise ValueError(f"max_concepts must be in [1, 20] (distinct colors), got {max_concepts}")
    size = (image.shape[1], image.shape[2])
    layers: dict[str, Tensor] = {}
    for layer, maps in concept_maps.items():
        if not isinstance(maps, Tensor) or maps.dim() != 3 or not maps.is_floating_point():
            raise ValueError(
                f"concept_maps[{layer!r}] must be a floating tensor of shape (h, H, W) (one "
                f"map per concept head), got {getattr(maps, 'shape', type(maps))}"
            )
        maps = maps.detach().float().cpu()
        if not bool(torch.isfinite(maps).all()) or maps.min() < -1e-3 or maps.max() > 1 + 1e-3:
            raise ValueError(f"concept_maps[{layer!r}] must hold probabilities in [0, 1]")
        layers[str(layer)] = maps.clamp(0, 1)
    n_heads = max(maps.shape[0] for maps in layers.values())
    too_few = concept_names is not None and (
        isinstance(concept_names, str) or len(concept_names) < n_heads
    )
    if too_few:
        raise ValueError(
            f"concept_names must list at least {n_heads} names (one per concept head) or be None"
        )

    palette = colormaps["tab10" if max_concepts <= 10 else "tab20"]
    gray = image.mean(dim=0)
    n_panels = len(layers)
    figure = _new_figure(2.9 * n_panels + 0.3, 3.6)
    axes = figure.subplots(1, n_panels, squeeze=False)[0]
    for ax, (layer, maps) in zip(axes, layers.items(), strict=True):
        heads, colors = _draw_concepts(ax, gray, maps, size, palette, max_concepts)
        ax.set_title(f"{layer} ({maps.shape[1]}×{maps.shape[2]})", fontsize=9)
        names = [
            concept_names[h] if concept_names is not None else f"concept {h}"
            for h in heads.tolist()
        ]
        handles = [Patch(color=colors[i].tolist(), label=name) for i, name in enumerate(names)]
        ax.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.02),
            fontsize=7,
            ncols=min(2, len(handles)),
            frameon=False,
        )
    if title:
        figure.suptitle(title, fontsize=10)
    return _save(figure, target, overwrite)
