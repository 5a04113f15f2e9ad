"""Resolution and training-length study: does LAP's verdict depend on its grid and on training?

Trains vanilla, WS-LAP and BB-LAP ResNet18 runs at several input sizes and two training
lengths, evaluates every explainer on them with ``torchlap compare``, and prints two tables:
per dataset, size and length, the accuracy and LAP's IoU (thresholding and top-scored
selection) of each LAP run against the best post-hoc method on the same model (paper 000's
claim), then LAP's Drop% and Increase% against the best post-hoc method's (paper 003's
faithfulness), each with LAP's per-image lead and its bootstrap interval.

Usage::

    python benchmarks/resolution_study.py                              # everything (hours)
    python benchmarks/resolution_study.py --sizes 128 --data lesions   # one part
    python benchmarks/resolution_study.py --table-only                 # print the tables

Every step is a ``torchlap`` command in its own process, and a finished step is never redone:
a killed study continues where it stopped, and parts (``--sizes``, ``--data``, ``--lengths``)
can run one after the other or in the background (``nohup ... &``); ``--devices N`` shares each
comparison's images between N processes (``torchlap compare --devices`` with batches of
``ceil(--eval-images / N)`` images, so that every process explains one). Wall
times per step are kept in ``OUT/study.json``. The default ``--out`` is
``benchmarks/results/resolution-study``, whose ``.gitignore`` keeps only ``study.json``, each
cell's ``comparison.json`` and its runs' ``metrics.json`` under version control: a finished
cell is skipped (its runs are not needed again) and the table can be printed from a clean
clone.

Recipes: each dataset trains with its recipe in ``dataset_tables.RECIPES`` (one owner: the
schedule under which a vanilla network learns the task on a CPU budget): ``lesions`` the demo's
ResNet18 (1000 images, lr 1e-3) with the paper's ResNet18 LAP preset, ``digits`` the small CNN
(4000 images, lr 3e-3; a ResNet18 from scratch stays at chance there: 7% of 10 classes measured)
with the automatic LAP layout. ``--n-images`` overrides the recipe's image count (224 px with
fewer images, as issue 12 allows).

Lengths: ``demo`` trains the recipe's epochs (``lesions``: 4, the demo's; ``digits``: 15, the
per-dataset tables'), ``long`` three times as many (12 and 45); ``--demo-epochs`` and
``--long-epochs`` override both datasets. Both keep the epoch with the lowest validation
cross-entropy, as the demo does (the paper trains up to 300 epochs and keeps the best one). The
table's "kept epoch" column says whether that length was long enough: a kept epoch before the
last means the validation loss had stopped improving (each run's ``metrics.json`` is kept for it).

Evaluation: 64 test images (``--eval-images``; about half of the ``lesions`` test images hold
a lesion box, every ``digits`` image a box), the demo's 8 validation images and 1 stability
image (``torchlap.demo.DemoSettings``), and 500 RISE masks instead of the demo's 200, to keep
RISE's sampling noise down at 128 and 224 px. The demo's 16 test images left 8 lesion images
per cell, too few to separate LAP from the best post-hoc method: the 95% intervals of the
per-image lead were 4-8 IoU points wide (the table's "boxed of explained images" column says
what each cell was compared on). Every method explains the two LAP runs;
the vanilla run is trained for its test accuracy (the price of LAP), read from its
``metrics.json``, and not explained: the table compares LAP with the post-hoc methods on the
same model, as paper 000's Table II does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _steps import load_state, read_output, run_step, torchlap_command
from dataset_tables import LAP_PRESETS, RECIPES

RUNS = (  # {lap}: the dataset's LAP layout (dataset_tables.LAP_PRESETS)
    ("vanilla", ["--lap", "none", "--supervision", "none"]),
    ("ws-lap", ["--lap", "{lap}", "--supervision", "weak"]),
    ("bb-lap", ["--lap", "{lap}", "--supervision", "expert"]),
)
#: the long length trains this many times the demo length's epochs
LONG_FACTOR = 3
LAP_RUNS = ("ws-lap", "bb-lap")
POSTHOC = (
    "gradcam",
    "guided_gradcam",
    "guided_backprop",
    "deeplift",
    "relevance_cam",
    "scorecam",
    "rise",
    "sise",
)
METRICS = ("iou_threshold", "iou_topk")


def recipe_value(data: str, option: str) -> str:
    """The value of ``option`` (``"--epochs"``, ``"--n-images"``, ...) in ``data``'s recipe."""
    options = RECIPES[data]
    return options[options.index(option) + 1]


def train_options(args: argparse.Namespace, data: str, length: str) -> list[str]:
    """``data``'s recipe with the length's epochs and the image count of the command line."""
    demo = int(recipe_value(data, "--epochs"))
    if length == "demo":
        epochs = args.demo_epochs or demo
    else:
        epochs = args.long_epochs or LONG_FACTOR * demo
    n_images = args.n_images or int(recipe_value(data, "--n-images"))
    values = {"--epochs": str(epochs), "--n-images": str(n_images)}
    recipe = RECIPES[data]
    return [values.get(recipe[i - 1], option) if i else option for i, option in enumerate(recipe)]


def run_part(args: argparse.Namespace, data: str, size: int, length: str) -> None:
    """Train the three runs of one (dataset, size, length) cell and compare them."""
    out = Path(args.out)
    state = load_state(out)
    cell = out / data / f"{size}px" / length
    if (cell / "compare" / "comparison.json").is_file():
        return  # a finished cell (its runs may have been deleted to save space) is never redone
    recipe = train_options(args, data, length)
    run_dirs = []
    for name, options in RUNS:
        run_dir = cell / "runs" / name
        options = [o.replace("{lap}", LAP_PRESETS[data]) for o in options]
        command = [
            *torchlap_command(), "train", "--data", data, "--image-size", str(size), *recipe,
            "--seed", str(args.seed), "--out", str(run_dir), *options,
        ]  # fmt: skip
        # both lengths keep the epoch with the lowest validation cross-entropy (the demo's rule)
        command += ["--keep-epoch", "best", "--select-metric", "cross_entropy"]
        run_step(out, state, f"{data}/{size}/{length}/train/{name}", command,
              run_dir / "model.safetensors")  # fmt: skip
        if name in LAP_RUNS:
            run_dirs.append(str(run_dir))
    compare_dir = cell / "compare"
    command = [
        *torchlap_command(), "compare", *run_dirs, "--data", data, "--out", str(compare_dir),
        "--max-images", str(args.eval_images), "--max-val-images", str(args.val_images),
        "--stability-images", str(args.stability_images),
        "--method-options", json.dumps(
            {"rise": {"n_masks": args.rise_masks}, "sise": {"mu": args.sise_mu}}
        ),
    ]  # fmt: skip
    if args.devices != 1:
        # torchlap compare --devices shares whole batches between the processes: with the
        # default batch of 32 images the study's 16 would all go to one process (measured: the
        # lesions 224px demo comparison ran on one of two), so each process gets a batch
        batch = -(-args.eval_images // args.devices)
        command += ["--devices", str(args.devices), "--batch-size", str(min(32, batch))]
    key = f"{data}/{size}/{length}/compare"
    run_step(out, state, key, command, compare_dir / "comparison.json")


def _value(metric: object) -> float | None:
    return metric.get("value") if isinstance(metric, dict) else None


def _kept_epoch(run_dir: Path) -> str:
    """``kept/trained`` epochs of a run from its ``metrics.json`` (kept under version control):
    a kept epoch before the last says the validation loss had stopped improving."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return "-"
    selected = read_output(path, optional=("selected_epoch",)).get("selected_epoch") or {}
    if "global_epoch" not in selected:
        return "-"
    return f"{selected['global_epoch']}/{selected.get('of_epochs', '?')}"


def _test_balanced_accuracy(run_dir: Path) -> str:
    """The run's test balanced accuracy in % from its ``metrics.json``, or ``-``."""
    path = run_dir / "metrics.json"
    value = (read_output(path, optional=("test",)).get("test") or {}) if path.is_file() else {}
    balanced = value.get("balanced_accuracy")
    return "-" if balanced is None else f"{100 * balanced:.1f}"


def _train_images(state: dict, prefix: str, data: str) -> str:
    """The image count the cell's runs trained on: from the arguments ``study.json`` records
    (steps since 2026-12-03), else the dataset's recipe, which every earlier cell trained with."""
    arguments = state["steps"].get(f"{prefix}train/vanilla", {}).get("arguments")
    if arguments and "--n-images" in arguments:
        return arguments[arguments.index("--n-images") + 1]
    return recipe_value(data, "--n-images")


def _compared(state: dict, prefix: str, run: dict) -> str:
    """When the cell's comparison finished and under which metric definitions
    (``torchlap.evaluate.METRICS_REVISION``, recorded in each run's protocol): cells compared
    under different revisions are not comparable column for column."""
    finished = state["steps"].get(f"{prefix}compare", {}).get("finished", "")
    revision = (run.get("protocol") or {}).get("metrics_revision")
    date = finished.split(" ")[0] if finished else "-"
    return f"{date} ({'?' if revision is None else revision})"


def _lead(run: dict, metric: str, best: str | None, scale: float = 100.0) -> str:
    """LAP's mean per-image lead over the best post-hoc method on the same images (IoU points,
    or the difference times ``scale``), with its bootstrap interval (``results["paired"]``,
    written by torchlap evaluate since the intervals were added; ``-`` for a comparison made
    before, or for a metric it did not pair: ``metric`` as ``"iou_topk"`` or
    ``"faithfulness/drop"``)."""
    paired = (run.get("paired") or {}).get("references", {}).get("lap", {})
    entry = paired.get(metric, {}).get(best) if best is not None else None
    if not entry or entry.get("difference") is None:
        return "-"
    text = f"{scale * entry['difference']:+.1f}"
    if entry.get("interval") is not None:
        low, high = entry["interval"]
        text += f" [{scale * low:+.1f}, {scale * high:+.1f}]"
    return text


def _best(section: dict, metric: str, higher: bool) -> tuple[float, str] | None:
    """``(value, method)`` of the best post-hoc method by ``metric`` in a results section."""
    scored = [
        (_value(section.get(m, {}).get(metric)), m)
        for m in POSTHOC
        if _value(section.get(m, {}).get(metric)) is not None
    ]
    if not scored:
        return None
    return max(scored) if higher else min(scored)


def _cells(out: Path) -> list[tuple[Path, str, str, str, dict]]:
    """``(cell folder, dataset, size, step prefix, runs of comparison.json)`` of every finished
    cell: by dataset, size in pixels, demo before long."""

    def order(path: Path) -> tuple:
        cell = path.parent.parent
        return cell.parent.parent.name, int(cell.parent.name[:-2]), cell.name != "demo"

    cells = []
    for path in sorted(out.glob("*/*px/*/compare/comparison.json"), key=order):
        length_dir = path.parent.parent
        size, data = length_dir.parent.name, length_dir.parent.parent.name
        prefix = f"{data}/{size[:-2]}/{length_dir.name}/"
        runs = read_output(path, "torchlap-comparison", ("runs",))["runs"]
        cells.append((length_dir, data, size, prefix, runs))
    return cells


def _scored_images(localization: dict) -> str:
    """``boxed of explained`` test images behind LAP's IoU (the images with a region are the
    ones scored; ``n`` and ``n_excluded`` of its top-K entry), or ``-``."""
    entry = localization.get("lap", {}).get("iou_topk")
    if not isinstance(entry, dict) or not isinstance(entry.get("n"), int):
        return "-"
    return f"{entry['n']} of {entry['n'] + entry.get('n_excluded', 0)}"


def table(out: Path) -> str:
    """Markdown table of every finished cell under ``out``: LAP's IoU against the best
    post-hoc method's (paper 000's Table II claim)."""
    state = load_state(out)
    # test balanced accuracy of each run on its whole test split (metrics.json; for the 10
    # digits classes the mean recall per class), not on the few images the comparison explains
    header = ["Data", "Size", "images", "Length", "Run", "kept epoch", "test BA %",
              "vanilla test BA %", "LAP IoU thr. %", "best post-hoc thr. %", "LAP IoU top-K %",
              "best post-hoc top-K %", "LAP - best thr. [interval]",
              "LAP - best top-K [interval]", "boxed of explained images",
              "cell wall time (min)", "compared (metrics rev.)"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for length_dir, data, size, prefix, runs in _cells(out):
        minutes = sum(s["seconds"] for k, s in state["steps"].items() if k.startswith(prefix))
        for name in LAP_RUNS:
            run = runs.get(name)
            if run is None:
                continue
            localization = run.get("localization", {})
            images = _train_images(state, prefix, data)
            cells = [data, size, images, length_dir.name, name,
                     _kept_epoch(length_dir / "runs" / name),
                     _test_balanced_accuracy(length_dir / "runs" / name),
                     _test_balanced_accuracy(length_dir / "runs" / "vanilla")]  # fmt: skip
            leads = []
            for metric in METRICS:
                lap = _value(localization.get("lap", {}).get(metric))
                best = _best(localization, metric, higher=True)
                cells.append("n/a" if lap is None else f"{100 * lap:.1f}")
                cells.append("n/a" if best is None else f"{100 * best[0]:.1f} ({best[1]})")
                leads.append(_lead(run, metric, None if best is None else best[1]))
            cells += [*leads, _scored_images(localization), f"{minutes / 60:.0f}"]
            cells.append(_compared(state, prefix, run))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def faithfulness_table(out: Path) -> str:
    """Markdown table of every finished cell under ``out``: LAP's Drop% and Increase% (paper
    003: the top 15% of each map kept; percentages already, so leads are percentage points)
    against the best post-hoc method's on the same images (Drop%: the lowest is the best)."""
    header = ["Data", "Size", "Length", "Run", "LAP Drop %", "best post-hoc Drop %",
              "LAP - best Drop % [interval]", "LAP Increase %", "best post-hoc Increase %",
              "LAP - best Increase % [interval]", "explained images"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for length_dir, data, size, _, runs in _cells(out):
        for name in LAP_RUNS:
            run = runs.get(name)
            if run is None:
                continue
            faithfulness = run.get("faithfulness", {})
            cells = [data, size, length_dir.name, name]
            for metric, higher in (("drop", False), ("increase", True)):
                lap = _value(faithfulness.get("lap", {}).get(metric))
                best = _best(faithfulness, metric, higher)
                cells.append("n/a" if lap is None else f"{lap:.1f}")
                cells.append("n/a" if best is None else f"{best[0]:.1f} ({best[1]})")
                best_name = None if best is None else best[1]
                cells.append(_lead(run, f"faithfulness/{metric}", best_name, scale=1.0))
            entry = faithfulness.get("lap", {}).get("drop")
            n = entry.get("n") if isinstance(entry, dict) else None
            cells.append("-" if n is None else str(n + entry.get("n_excluded", 0)))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the selected parts of the study, then print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/resolution-study")
    parser.add_argument("--data", default="lesions,digits")
    parser.add_argument("--sizes", default="64,128,224")
    parser.add_argument("--lengths", default="demo,long")
    # default: the dataset's recipe (dataset_tables.RECIPES), long = LONG_FACTOR x demo
    parser.add_argument("--demo-epochs", type=int, default=None)
    parser.add_argument("--long-epochs", type=int, default=None)
    parser.add_argument("--n-images", type=int, default=None)
    # the demo's evaluation sizes (torchlap.demo.DemoSettings) except 64 test images instead
    # of 16 (see the module) and RISE's mask count: 500 masks instead of the demo's 200 keep
    # RISE's sampling noise down at 128 and 224 px
    parser.add_argument("--eval-images", type=int, default=64)
    parser.add_argument("--val-images", type=int, default=8)
    parser.add_argument("--stability-images", type=int, default=1)
    parser.add_argument("--rise-masks", type=int, default=500)
    parser.add_argument("--sise-mu", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    # processes sharing each comparison's images (one result, as one process writes it)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args(argv)
    lengths = args.lengths.split(",")
    unknown = [length for length in lengths if length not in ("demo", "long")]
    if unknown:
        parser.error(f"unknown length {unknown[0]!r}; expected demo or long")
    try:
        sizes = [int(size) for size in args.sizes.split(",")]
    except ValueError:
        parser.error(
            f"--sizes takes comma-separated pixel counts such as 64,128; got {args.sizes!r}"
        )
    if min(sizes) < 32:
        parser.error(
            f"every size must be at least 32 px (torchlap train's minimum); got {args.sizes!r}"
        )
    datasets = args.data.split(",")
    unknown = [data for data in datasets if data not in RECIPES]
    if unknown:
        parser.error(f"no recipe for dataset {unknown[0]!r}; expected one of {', '.join(RECIPES)}")
    # refused before the first training step, not by the comparison hours later
    positive = ("demo_epochs", "long_epochs", "n_images", "devices", "eval_images",
                "val_images", "stability_images", "rise_masks")  # fmt: skip
    for name in positive:
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    if not 0 <= args.sise_mu < 1:  # SISE's Eq. 7 threshold (torchlap.explainers.sise)
        parser.error(f"--sise-mu must be a number in [0, 1), got {args.sise_mu}")
    out = Path(args.out)
    try:  # a study.json the study did not write: named in one line (exit 2), not a traceback
        load_state(out)
    except ValueError as error:
        parser.error(str(error))
    out.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        for data in datasets:
            for size in sizes:
                for length in lengths:
                    run_part(args, data, size, length)
    print(table(out))
    print()
    print(faithfulness_table(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
