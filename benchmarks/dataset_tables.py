"""Every method and peer on each built-in dataset: IoU, grid pointing game and sanity checks.

For each dataset (``lesions``, ``concepts``, ``digits``) trains vanilla, WS-LAP and BB-LAP
networks, a B-cos network, BLA, BLA-T, BLA-PH, L2X-F and the ante-hoc network (``lesions`` at
64 px, ``concepts`` and ``digits`` at 32 px: ``IMAGE_SIZES``; ``--image-size`` sets all), each with
its dataset's recipe (``RECIPES``: the demo's ResNet18 schedule where it learns the task), the
epoch with the lowest validation cross-entropy kept, then runs three ``torchlap compare``:

1. ``compare``: every explainer on the vanilla and LAP runs (32 test images, 16 validation
   images for the thresholds, 2 for stability, 200 RISE masks, SISE at mu = 0.3);
2. ``peers``: the peers with their own maps and the gradient methods, alike;
3. ``checks``: the sanity checks and the grid pointing game of the models' own maps and the
   gradient methods on every run (on the perturbation explainers each randomized copy costs
   their full price: ask ``torchlap compare --sanity`` for them);

and, after every dataset's other runs, the B-cos run and its ``bcos`` and ``bcos-checks``
comparisons (1 and 3 for it alone; each run is evaluated on its own, so splitting the runs over
comparisons changes no number). It prints one markdown table per dataset: for every run and
method, IoU with the expert boxes (thresholding and top-scored selection, percent), the grid
pointing game (mean share of positive attribution in the explained cell) and the sanity summary
(Spearman rank correlation of the absolute maps between the trained and the fully randomized
model; pass below the threshold the results record).

Usage::

    python benchmarks/dataset_tables.py                     # all three datasets
    python benchmarks/dataset_tables.py --data digits       # one
    python benchmarks/dataset_tables.py --table-only        # print the tables

Resumable like the resolution study (``_steps.py``): a finished run or comparison is never
redone; ``OUT/study.json`` keeps each step's wall time and date, and the ``.gitignore`` of the
default ``--out`` keeps the comparisons under version control.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _steps import load_state, read_output, run_step, torchlap_command

DATASETS = ("lesions", "concepts", "digits")
#: common training options: the demo's batch, seed and epoch selection
TRAIN = ["--batch-size", "32", "--seed", "0", "--select-metric", "cross_entropy"]
#: per dataset: the architecture and schedule under which a vanilla network learns the task on
#: (also the resolution study's recipes: its ``demo`` length trains these epochs)
#: a CPU budget (lesions: the demo's; concepts and digits: a ResNet18 from scratch stays at
#: chance on 1000 images in 4 epochs (measured: 28% of 4 classes, 7% of 10), the small CNN of
#: the README's peer table learns from 4000 images in 15 epochs)
RECIPES = {
    "lesions": ["--arch", "resnet18", "--n-images", "1000", "--epochs", "4", "--lr", "0.001"],
    "concepts": ["--arch", "smallcnn", "--n-images", "4000", "--epochs", "15", "--lr", "0.003"],
    "digits": ["--arch", "smallcnn", "--n-images", "4000", "--epochs", "15", "--lr", "0.003"],
}
#: input size per dataset: lesions at the demo's 64 px; digits and concepts at 32 px, where the
#: small CNN's 15 epochs cost a quarter of 64 px (measured: a 64-px digits run took 12-19 min
#: on one core). At 32 px a digit (an 8x8 scan) is still drawn 11-18 px tall; a concept shape
#: has a radius of 2-5 px; the small CNN's LAP maps are 16, 8 and 4 px before the global pool
IMAGE_SIZES = {"lesions": 64, "concepts": 32, "digits": 32}
#: the LAP layout of each recipe's architecture: the paper's ResNet18 preset, else auto
LAP_PRESETS = {"lesions": "resnet18", "concepts": "auto", "digits": "auto"}
EVALUATE = ["--max-images", "32", "--max-val-images", "16", "--stability-images", "2",
            "--seed", "0"]  # fmt: skip
#: the perturbation explainers' settings, passed to the comparisons that evaluate them
#: (``evaluate`` refuses options for a method it does not evaluate)
METHOD_OPTIONS = {"rise": {"n_masks": 200}, "sise": {"mu": 0.3}}
CHECKS = ["--sanity", "--sanity-images", "4", "--grid-pg", "--grid-pg-grids", "8"]
#: the grid pointing game's confidence per dataset (default 0.9): the concepts models (50-78 %
#: top-1) classify too few test images of four classes with p >= 0.9 for a 2x2 grid (measured:
#: skipped on every run at 0.9), so concepts uses 0.5 (results.json records it)
GRID_CONFIDENCE = {"concepts": "0.5"}
MAIN_RUNS = {
    "vanilla": ["--lap", "none", "--supervision", "none"],
    "ws-lap": ["--lap", "{lap}", "--supervision", "weak"],  # {lap}: LAP_PRESETS[dataset]
    "bb-lap": ["--lap", "{lap}", "--supervision", "expert"],
    "bcos": ["--lap", "none", "--supervision", "none", "--model", "bcos"],
}
#: the B-cos run's schedule per dataset (replaces ``RECIPES``: the small CNN is not a B-cos
#: architecture; see the README's B-cos section for how it was chosen)
BCOS_RECIPES = {
    # the package's small-input ResNet-20 (3x3 stem, no max-pool): a B-cos ResNet18 stays at
    # chance on lesions at 64 px (measured: test BA 0.50 at lr 1e-3 and 3e-3), ResNet-20 0.84
    "lesions": [
        "--arch",
        "cifar10_resnet20",
        "--n-images",
        "1000",
        "--epochs",
        "4",
        "--lr",
        "0.001",
    ],
    # torchlap's B-cos small CNN with the small CNN's schedule (measured on concepts: 0.49)
    "concepts": ["--arch", "smallcnn", "--n-images", "4000", "--epochs", "15", "--lr", "0.003"],
    "digits": ["--arch", "smallcnn", "--n-images", "4000", "--epochs", "15", "--lr", "0.003"],
}
PEER_RUNS = {
    name: ["--lap", "none", "--supervision", "none", "--model", name]
    for name in ("bla", "bla-t", "bla-ph", "l2x-f", "antehoc")
}
ALL_METHODS = ("lap,gradcam,guided_gradcam,guided_backprop,deeplift,relevance_cam,scorecam,"
               "rise,sise,bcos")  # fmt: skip
CHECK_METHODS = "lap,bla,antehoc,bcos,gradcam,guided_gradcam,guided_backprop,deeplift,relevance_cam"
NON_BCOS = tuple(name for name in (*MAIN_RUNS, *PEER_RUNS) if name != "bcos")
COMPARES = {  # folder -> (runs, methods, extra options)
    "compare": (("vanilla", "ws-lap", "bb-lap"), ALL_METHODS, []),
    "peers": (tuple(PEER_RUNS), CHECK_METHODS, []),
    "checks": (NON_BCOS, CHECK_METHODS, CHECKS),
    # the B-cos run on its own (trained last: the longest to train), the same evaluation
    "bcos": (("bcos",), ALL_METHODS, []),
    "bcos-checks": (("bcos",), CHECK_METHODS, CHECKS),
}


def train_runs(out: Path, data: str, image_size: int | None, names: tuple[str, ...]) -> None:
    """Train the dataset's runs ``names`` (each once)."""
    state = load_state(out)
    runs = out / data / "runs"
    for name in names:
        options = {**MAIN_RUNS, **PEER_RUNS}[name]
        recipe = BCOS_RECIPES[data] if name == "bcos" else RECIPES[data]
        extra = ["--pretrained", str(runs / "vanilla")] if name == "bla-ph" else []
        options = [o.replace("{lap}", LAP_PRESETS[data]) for o in options]
        size = ["--image-size", str(image_size or IMAGE_SIZES[data])]
        command = [*torchlap_command(), "train", "--data", data, *TRAIN, *size, *recipe,
                   *options, *extra, "--out", str(runs / name)]  # fmt: skip
        run_step(out, state, f"{data}/train/{name}", command, runs / name / "model.safetensors")


def compare_runs(out: Path, data: str, folders: tuple[str, ...]) -> None:
    """Make the dataset's comparisons ``folders`` (each once)."""
    state = load_state(out)
    runs = out / data / "runs"
    for folder in folders:
        names, methods, extra = COMPARES[folder]
        if "--grid-pg" in extra and data in GRID_CONFIDENCE:
            extra = [*extra, "--grid-pg-confidence", GRID_CONFIDENCE[data]]
        evaluated = methods.split(",")
        options = {name: o for name, o in METHOD_OPTIONS.items() if name in evaluated}
        if options:
            extra = [*extra, "--method-options", json.dumps(options)]
        command = [*torchlap_command(), "compare", *(str(runs / n) for n in names),
                   "--data", data, "--methods", methods, *EVALUATE, *extra,
                   "--out", str(out / data / folder)]  # fmt: skip
        done = out / data / folder / "comparison.json"
        run_step(out, state, f"{data}/{folder}", command, done)


PARTS = ("all", "others", "bcos")


def run_datasets(
    out: Path, datasets: tuple[str, ...], image_size: int | None, part: str = "all"
) -> None:
    """Every dataset's runs and comparisons; the B-cos runs and their comparisons after all
    others (the longest to train, and independent of the rest). ``part``: ``"others"`` or
    ``"bcos"`` runs one of the two halves (for two processes at once)."""
    for data in datasets if part in ("all", "others") else ():
        train_runs(out, data, image_size, NON_BCOS)
        compare_runs(out, data, ("compare", "peers", "checks"))
    for data in datasets if part in ("all", "bcos") else ():
        train_runs(out, data, image_size, ("bcos",))
        compare_runs(out, data, ("bcos", "bcos-checks"))


def _value(entry: object, key: str) -> float | None:
    item = entry.get(key) if isinstance(entry, dict) else None
    return item.get("value") if isinstance(item, dict) else None


def _fmt(value: float | None, scale: float = 1.0, decimals: int = 3) -> str:
    return "-" if value is None else f"{scale * value:.{decimals}f}"


def _iou(entry: object, key: str) -> str:
    """IoU in percent; ``n/a`` when computed but undefined (no usable sample), ``-`` when not
    computed (the method does not apply, or was not run)."""
    if not isinstance(entry, dict) or key not in entry:
        return "-"
    value = _value(entry, key)
    return "n/a" if value is None else _fmt(value, 100, 2)


def dataset_table(comparison: dict) -> str:
    """One markdown table of every (run, method) of a ``comparison.json``."""
    header = ["Run (test BA / top-1 %)", "Method", "IoU thr. %", "IoU top-K %", "Grid PG",
              "Spearman at full randomization", "Sanity"]  # fmt: skip
    skipped = []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, run in comparison["runs"].items():
        localization = run.get("localization") or {}
        sanity = run.get("sanity") or {}
        game = run.get("grid_pointing_game") or {}
        model = run.get("model") or {}
        # balanced accuracy for a binary task, top-1 accuracy for a multi-class one
        accuracy = _value(model, "balanced_accuracy")
        accuracy = _value(model, "top1_accuracy") if accuracy is None else accuracy
        label = f"{name} ({_fmt(accuracy, 100, 1)})"
        reason = (run.get("grid_pointing_setup") or {}).get("skipped")
        if reason:
            skipped.append(f"{name}: {reason}")
        methods = [m for m in dict.fromkeys([*localization, *sanity, *game])]
        for method in methods:
            check = sanity.get(method) or {}
            passed = check.get("passed")
            verdict = "-" if not check else {True: "pass", False: "**fail**"}.get(passed, "n/a")
            shown = (run.get("methods") or {}).get(method, {}).get("display_name", method)
            cells = [
                label,
                shown,
                _iou(localization.get(method), "iou_threshold"),
                _iou(localization.get(method), "iou_topk"),
                _fmt((game.get(method) or {}).get("mean")),
                _fmt((check.get("summary") or {}).get("spearman_abs")),
                verdict,
            ]
            lines.append("| " + " | ".join(cells) + " |")
            label = name
        if not methods:
            lines.append(f"| {label} | (no method applied) |" + " |" * (len(header) - 2))
    if skipped:
        lines.append("\nGrid pointing game skipped on " + "; ".join(skipped) + ".")
    return "\n".join(lines)


def merged(out: Path, data: str) -> dict | None:
    """The runs of the dataset's comparisons merged (``None`` until all three exist)."""
    paths = [out / data / folder / "comparison.json" for folder in COMPARES]
    if not all(p.is_file() for p in paths):
        return None
    runs: dict = {}
    for path in paths:
        for name, run in read_output(path, "torchlap-comparison", ("runs",))["runs"].items():
            entry = runs.setdefault(name, {})
            for key in ("model", "grid_pointing_setup"):
                if run.get(key) is not None:  # the comparison that computed it
                    entry.setdefault(key, run[key])
            entry.setdefault("methods", {}).update(run.get("methods") or {})
            for key in ("localization", "sanity", "grid_pointing_game"):
                entry.setdefault(key, {}).update(run.get(key) or {})
    return {"runs": runs}


def tables(out: Path, datasets: tuple[str, ...]) -> str:
    """The tables of every finished dataset under ``out``, with date and wall time."""
    state = load_state(out)["steps"]
    parts = []
    for data in datasets:
        comparison = merged(out, data)
        if comparison is None:
            continue
        steps = {k: v for k, v in state.items() if k.startswith(f"{data}/")}
        minutes = sum(step["seconds"] for step in steps.values()) / 60
        last = max((step.get("finished", "?") for step in steps.values()), default="?")
        parts.append(
            f"#### `{data}` (finished {last}, {minutes:.0f} min of training and evaluation)\n\n"
            + dataset_table(comparison)
        )
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Run the selected datasets, then print their tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/datasets")
    parser.add_argument("--data", default=",".join(DATASETS))
    parser.add_argument("--image-size", type=int, default=None, help="default: IMAGE_SIZES")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--part", default="all", choices=PARTS,
                        help="others: all but the B-cos runs; bcos: only those")  # fmt: skip
    args = parser.parse_args(argv)
    out = Path(args.out)
    datasets = tuple(args.data.split(","))
    unknown = [d for d in datasets if d not in DATASETS]
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; expected names from {DATASETS}")
    try:  # a study.json the study did not write: named in one line (exit 2), not a traceback
        load_state(out)
    except ValueError as error:
        parser.error(str(error))
    out.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        run_datasets(out, datasets, args.image_size, part=args.part)
    print(tables(out, datasets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
