"""Valid arguments of the public callables that take a model (the top-level functions, the
explainers, the perturbation metrics) or build one, for the API fuzzer (``api_fuzz``): a
lapified :class:`~torchlap.models.SmallCNN` of width 4 on three 16x16 images."""

from __future__ import annotations

import torch
from api_fuzz import Spec, counted

import torchlap
from torchlap import data, explainers, layers, losses, metrics, models


def _g(*shape: int) -> torch.Tensor:
    """A seeded random tensor (uniform in [0, 1))."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(sum(shape)))


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    model, _ = torchlap.lapify(models.SmallCNN(num_classes=3, width=4))
    return counted(model.eval())


def _images() -> torch.Tensor:
    return _g(3, 3, 16, 16)


def _maps() -> torch.Tensor:
    return _g(3, 16, 16)


def _labels() -> torch.Tensor:
    return torch.tensor([0, 1, 2])


def _explain(**kwargs: object) -> torch.Tensor:
    return torchlap.explain(**kwargs)


_IMAGES_TARGET = ("images", "target")
_CLASS_COUNT = (
    "the class count is the model's logits width, known after its first pass (documented: "
    "check_class_range)"
)
_ONE_TARGET = "a 0-d target is one class for every image (documented)"

TOP = [
    Spec(
        "explain-lap",
        torchlap.explain,
        lambda: {"model": _model(), "images": _images(), "method": "lap", "target": _labels()},
        batch=_IMAGES_TARGET,
        choices=("method",),
        names={"method": "explainer"},
        allow={"target": {"rank-1": _ONE_TARGET, "huge": _CLASS_COUNT}},
    ),
    Spec(
        "explain-gradcam",
        torchlap.explain,
        lambda: {"model": _model(), "images": _images(), "method": "gradcam", "target": _labels()},
        batch=_IMAGES_TARGET,
        fixed=frozenset({"method"}),
        allow={"target": {"rank-1": _ONE_TARGET, "huge": _CLASS_COUNT}},
    ),
    Spec(
        "explain-guided_backprop",
        torchlap.explain,
        lambda: {
            "model": _model(),
            "images": _images(),
            "method": "guided_backprop",
            "target": _labels(),
        },
        batch=_IMAGES_TARGET,
        fixed=frozenset({"method"}),
        allow={"target": {"rank-1": _ONE_TARGET, "huge": _CLASS_COUNT}},
        slow=True,
    ),
    Spec(
        "explain-guided_gradcam",
        torchlap.explain,
        lambda: {
            "model": _model(),
            "images": _images(),
            "method": "guided_gradcam",
            "target": _labels(),
        },
        batch=_IMAGES_TARGET,
        fixed=frozenset({"method"}),
        allow={"target": {"rank-1": _ONE_TARGET, "huge": _CLASS_COUNT}},
        slow=True,
    ),
    Spec(
        "explain-deeplift",
        torchlap.explain,
        lambda: {"model": _model(), "images": _images(), "method": "deeplift", "target": _labels()},
        batch=_IMAGES_TARGET,
        fixed=frozenset({"method"}),
        allow={"target": {"rank-1": _ONE_TARGET, "huge": _CLASS_COUNT}},
        slow=True,
    ),
    Spec(
        "explain-relevance_cam",
        torchlap.explain,
        lambda: {
            "model": _model(),
            "images": _images(),
            "method": "relevance_cam",
            "target": _labels(),
        },
        batch=_IMAGES_TARGET,
        fixed=frozenset({"method"}),
        allow={"target": {"rank-1": _ONE_TARGET, "huge": _CLASS_COUNT}},
        slow=True,
    ),
    Spec(
        "explain-scorecam",
        torchlap.explain,
        lambda: {"model": _model(), "images": _images(), "method": "scorecam", "target": _labels()},
        batch=_IMAGES_TARGET,
        fixed=frozenset({"method"}),
        allow={"target": {"rank-1": _ONE_TARGET, "huge": _CLASS_COUNT}},
        slow=True,
    ),
    Spec(
        "explain-sise",
        torchlap.explain,
        lambda: {"model": _model(), "images": _images(), "method": "sise", "target": _labels()},
        batch=_IMAGES_TARGET,
        fixed=frozenset({"method"}),
        allow={"target": {"rank-1": _ONE_TARGET, "huge": _CLASS_COUNT}},
        slow=True,
    ),
    Spec(
        "explain-rise",
        torchlap.explain,
        lambda: {
            "model": _model(),
            "images": _images(),
            "method": "rise",
            "target": _labels(),
            "n_masks": 8,
            "grid_size": 2,
            "seed": 0,
            "mask_batch_size": 4,
        },
        batch=_IMAGES_TARGET,
        fixed=frozenset({"method"}),
        allow={"target": {"rank-1": _ONE_TARGET, "huge": _CLASS_COUNT}},
        slow=True,
        positives=("n_masks", "grid_size", "mask_batch_size"),
    ),
    Spec(
        "lapify",
        torchlap.lapify,
        lambda: {
            "model": models.SmallCNN(num_classes=3, width=4),
            "where": "auto",
            "n_concepts": 2,
            "hidden_channels": 4,
            "aggregation": "max",
            "alpha": 1.0,
            "eps": 1e-6,
            "inplace": True,
            "head_hidden": "shared",
        },
        positives=("n_concepts", "eps"),
        choices=("where", "aggregation", "head_hidden"),
    ),
    Spec(
        "blaify",
        torchlap.blaify,
        lambda: {
            "model": models.SmallCNN(num_classes=3, width=4),
            "variant": "bla",
            "theta": 0.1,
            "tau": 10.0,
            "eval_path": "hard",
            "init": "glorot",
            "inplace": True,
            "pool": "sum",
        },
        choices=("variant", "eval_path", "init", "pool"),
        positives=("tau",),
    ),
    Spec("lap_modules", layers.lap_modules, lambda: {"model": _model()}),
    Spec(
        "enable_discriminative_scorers",
        losses.enable_discriminative_scorers,
        lambda: {"model": _model()},
    ),
    Spec("attention_maps", torchlap.attention_maps, lambda: {"model": _model(), "detach": True}),
    Spec("clear_attention_maps", torchlap.clear_attention_maps, lambda: {"model": _model()}),
    Spec("lap_parameters", torchlap.lap_parameters, lambda: {"model": _model()}),
    Spec(
        "freeze_all_but_lap",
        torchlap.freeze_all_but_lap,
        lambda: {"model": _model(), "also_trainable": ["fc"]},
    ),
]

EXPLAINERS = [
    Spec("GradCam", explainers.GradCam, lambda: {"model": _model(), "layer": None, "relu": True}),
    Spec(
        "GuidedBackprop",
        explainers.GuidedBackprop,
        lambda: {"model": _model(), "sign": "absolute"},
        choices=("sign",),
    ),
    Spec(
        "GuidedGradCam",
        explainers.GuidedGradCam,
        lambda: {"model": _model(), "sign": "absolute", "interpolate_mode": "bilinear"},
        choices=("sign", "interpolate_mode"),
    ),
    Spec(
        "DeepLift",
        explainers.DeepLift,
        lambda: {"model": _model(), "baseline": 0.0, "sign": "absolute"},
        choices=("sign",),
    ),
    Spec(
        "LapExplainer",
        explainers.LapExplainer,
        lambda: {
            "model": _model(),
            "layer": "all",
            "decay": 0.8,
            "threshold": 0.5,
            "variant": "algorithm1",
            "include_common": False,
        },
        choices=("variant",),
        positives=("decay",),
    ),
    Spec(
        "Rise",
        explainers.Rise,
        lambda: {
            "model": _model(),
            "n_masks": 8,
            "grid_size": 2,
            "p": 0.5,
            "seed": 0,
            "mask_batch_size": 4,
            "precision": "float32",
        },
        positives=("n_masks", "grid_size", "p", "mask_batch_size"),
        choices=("precision",),
    ),
    Spec(
        "ScoreCam",
        explainers.ScoreCam,
        lambda: {
            "model": _model(),
            "mask_batch_size": 4,
            "deduplicate": True,
            "precision": "float32",
        },
        positives=("mask_batch_size",),
        choices=("precision",),
    ),
    Spec(
        "Sise",
        explainers.Sise,
        lambda: {
            "model": _model(),
            "mu": 0.0,
            "mask_batch_size": 4,
            "deduplicate": True,
            "precision": "float32",
            "fusion_normalization": "none",
        },
        positives=("mask_batch_size",),
        choices=("precision", "fusion_normalization"),
    ),
    Spec(
        "RelevanceCam",
        explainers.RelevanceCam,
        lambda: {
            "model": _model(),
            "layer": None,
            "composite": "epsilon_plus",
            "canonizers": "auto",
        },
        choices=("composite",),
    ),
    Spec(
        "applicability",
        explainers.applicability,
        lambda: {"name": "gradcam", "model": _model()},
        choices=("name",),
        names={"name": "explainer"},
    ),
    Spec(
        "check_options",
        explainers.check_options,
        lambda: {"name": "rise", "options": {"n_masks": 8}},
        choices=("name",),
        names={"name": "explainer"},
    ),
    Spec(
        "select_lap_map",
        explainers.select_lap_map,
        lambda: {
            "maps": torchlap.LapMaps(_g(3, 3, 8, 8), _g(3, 1, 8, 8)),
            "target": _labels(),
            "num_classes": 3,
            "head": None,
            "include_common": False,
        },
        positives=("num_classes",),
    ),
]

_PERTURB = ("images", "maps", "labels")
_ANY_LEAD = "masks (..., H, W): any leading dimensions (documented)"
_FORWARD = "a forward pass reads no value (no device sync): NaN propagates"

METRICS = [
    Spec(
        "keep_top_k",
        metrics.keep_top_k,
        lambda: {
            "model": _model(),
            "images": _images(),
            "maps": _maps(),
            "labels": _labels(),
            "ks": (10, 50),
            "baseline": "zero",
            "batch_size": 2,
            "ties": "random",
            "tie_draws": 2,
            "seed": 0,
        },
        batch=_PERTURB,
        positives=("batch_size", "tie_draws"),
        choices=("baseline", "ties"),
        slow=True,
        allow={"labels": {"huge": _CLASS_COUNT}},
    ),
    Spec(
        "drop_increase",
        metrics.drop_increase,
        lambda: {
            "model": _model(),
            "images": _images(),
            "maps": _maps(),
            "labels": _labels(),
            "target": "label",
            "fraction": 0.15,
            "baseline": "zero",
            "batch_size": 2,
            "ties": "random",
            "tie_draws": 2,
            "seed": 0,
        },
        batch=_PERTURB,
        positives=("fraction", "batch_size", "tie_draws"),
        choices=("target", "baseline", "ties"),
        slow=True,
        allow={"labels": {"huge": _CLASS_COUNT}},
    ),
    Spec(
        "drop_inc_win",
        metrics.drop_inc_win,
        lambda: {
            "model": _model(),
            "images": _images(),
            "maps": _maps(),
            "labels": _labels(),
            "variants": ("energy", "binarized"),
            "binarize_threshold": 0.8,
            "normalize": True,
            "batch_size": 2,
            "binarize_normalization": "min_max",
        },
        batch=_PERTURB,
        positives=("batch_size",),
        choices=("binarize_normalization",),
        slow=True,
        allow={"labels": {"huge": _CLASS_COUNT}},
    ),
    Spec(
        "stability",
        metrics.stability,
        lambda: {
            "model": _model(),
            "explain_fn": lambda x, y: x.mean(dim=1),
            "images": _images(),
            "labels": _labels(),
            "fractions": (0.1, 0.2),
            "variant": "energy",
            "binarize_threshold": 0.8,
            "normalize": True,
            "seed": 0,
            "batch_size": 2,
            "binarize_normalization": "min_max",
        },
        batch=("images", "labels"),
        positives=("batch_size",),
        choices=("variant", "binarize_normalization"),
        slow=True,
        allow={"labels": {"huge": _CLASS_COUNT}},
    ),
]

MODELS_DATA = [
    Spec(
        "SmallCNN",
        models.SmallCNN,
        lambda: {"num_classes": 3, "in_channels": 3, "width": 4, "norm": "batch"},
        positives=("num_classes", "in_channels", "width"),
        choices=("norm",),
    ),
    Spec("Normalize", models.Normalize, lambda: {"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}),
    Spec(
        "soft_attention_map",
        models.soft_attention_map,
        lambda: {"activation": _g(3, 4, 8, 8), "size": (16, 16)},
        batch=("activation",),
        allow={"activation": {"nan": _FORWARD, "inf": _FORWARD}},
    ),
    Spec(
        "adapt_input_weight",
        models.adapt_input_weight,
        lambda: {"weight": _g(4, 3, 3, 3), "in_channels": 1},
        positives=("in_channels",),
    ),
    Spec(
        "select_conv_layers",
        models.select_conv_layers,
        lambda: {"backbone": models.SmallCNN(num_classes=3, width=4), "eta": 2},
        positives=("eta",),
    ),
    Spec(
        "boxes_to_mask",
        data.boxes_to_mask,
        lambda: {
            "boxes": torch.tensor([[1.0, 2.0, 5.0, 6.0], [0.0, 0.0, 2.0, 2.0]]),
            "height": 8,
            "width": 8,
        },
        positives=("height", "width"),
        allow={"boxes": {"int64": "pixel edges may be ints (documented: finite numbers)"}},
    ),
    Spec(
        "masks_to_tight_boxes",
        data.masks_to_tight_boxes,
        lambda: {"masks": _g(3, 8, 8) > 0.5},
        allow={"masks": {"rank-1": _ANY_LEAD, "rank+1": _ANY_LEAD}},
    ),
    Spec(
        "default_normalization",
        data.default_normalization,
        lambda: {"n_channels": 3},
        positives=("n_channels",),
    ),
    Spec(
        "default_transforms",
        data.default_transforms,
        lambda: {"image_size": 16, "n_channels": 3, "train": False},
        positives=("image_size", "n_channels"),
    ),
    Spec(
        "Lesions",
        data.Lesions,
        lambda: {
            "split": "train",
            "n_images": 10,
            "image_size": 32,
            "split_fractions": (0.8, 0.1, 0.1),
            "seed": 0,
        },
        positives=("n_images", "image_size"),
        choices=("split",),
    ),
    Spec(
        "builtin_dataset",
        data.builtin_dataset,
        lambda: {"name": "lesions"},
        choices=("name",),
        names={"name": "dataset"},
    ),
    Spec(
        "first_images",
        data.first_images,
        lambda: {"dataset": data.Lesions(n_images=10, image_size=32), "n_images": 3, "seed": 0},
        positives=("n_images",),
    ),
]

SPECS = [*TOP, *EXPLAINERS, *METRICS, *MODELS_DATA]

#: public callables of the swept packages that no spec fuzzes, and why
NOT_FUZZED = {
    "load_run": "reads a run folder: its bad input is swept by test_robust_reading.py",
    "LapBase": "the LAP layers' base class: swept through its two subclasses",
    "LapMaps": "the record every LAP pass builds, checked where it is used (InjectionLoss and "
    "select_lap_map name the layer; test_losses_injection_map_shapes.py)",
    "MetricResult": "a result record the metrics build (not an input)",
    "InjectionLoss": "its options: test_losses_injection*.py; its maps come from a model",
    "Explainer": "the base class: swept through its subclasses",
    "FeatureProbe": "a record the explainers build (not an input)",
    "AnteHocExplainer": "needs an ante-hoc model: test_models_antehoc*.py",
    "BcosExplainer": "needs a B-cos model: test_models_bcos.py",
    "BlaExplainer": "needs a BLA model: test_models_bla*.py",
    "find_antehoc": "needs an ante-hoc model: test_models_antehoc*.py",
    "probe_features": "an explainer's internal probe (hooks list of its caller)",
    "register": "registration: test_robust_restore_registration.py",
    "registered": "registration: test_robust_restore_registration.py",
    "unregister": "registration: test_robust_restore_registration.py",
    "available": "takes no argument",
    "read_run_config": "needs a run folder: test_robust_reading.py sweeps damaged ones",
    "read_run_facts": "needs a run folder: load_run's config checks, which it runs first "
    "(test_robust_reading.py sweeps damaged ones; test_evaluate_data_before_model.py)",
    "EvalData": "the record load_eval_data returns, an input of no public function",
    # records and results (built by torchlap, inputs of no public function)
    "AnteHocMaps": "the record an ante-hoc pass builds",
    "BlaMaps": "the record a BLA pass builds",
    "ImageRecord": "a CSV row record; read_annotations refuses malformed rows (test_data_*)",
    "Table": "a report table the table functions build",
    "LoadedRun": "the record load_run returns",
    "RunFacts": "the record read_run_facts returns (load_run takes it back)",
    "Preset": "a LAP placement preset of the registry",
    "Recipe": "the base of the model recipes (test_models_recipes.py)",
    # no argument to fuzz
    "model_choices": "takes no argument",
    "builtin_names": "takes no argument",
    # base classes and blocks built by lapify from a torchvision block
    "FeatureSelectionPool": "the base of BLA and L2X-F: swept through both",
    "RegionDataset": "the base of the datasets: swept through Lesions and Digits",
    "SyntheticBenchmark": "the base of the built-in benchmarks: swept through Lesions and Digits",
    "Concepts": "a built-in benchmark of Lesions' and Digits' signature (swept through them)",
    "LapResidualBlock": "built by lapify from a torchvision block (test_models_lapify_blocks.py)",
    "LapInceptionReduction": "built by lapify from a torchvision block (test_models_lapify*.py)",
    # recorded configurations: their damaged forms are swept by the run-record tests
    "apply_lapify_config": "a recorded config: test_models_run_records.py",
    "apply_blaify_config": "a recorded config: test_models_run_records.py",
    "model_from_config": "a recorded config: test_models_run_records.py",
    "rebuild_model": "a recorded config: test_models_run_records.py, test_robust_run_records.py",
    "checked_integrity_record": "a run config's record, checked: damaged ones are swept by "
    "test_train_overwrite_record.py and test_robust_reading.py",
    "check_integrity": "a run folder's record: test_robust_integrity_previous.py",
    "record_integrity": "writes a run's config.json: test_robust_run_records.py",
    "resolve_run_data": "a run's config: test_robust_reading.py",
    # need a trained run, a dataset folder or a training step (swept by their own tests and by
    # the CLI sweep of test_robust_cli_sweep.py)
    "AnnotatedFolder": "a dataset folder: test_data_folder*.py, test_data_refusals.py",
    "image_folder": "a dataset folder: test_data_folder*.py, test_data_refusals.py",
    "imagenet_folder": "a dataset folder: test_data_importers.py",
    "celeba": "a dataset folder: test_data_importers.py",
    "rsna_pneumonia": "a dataset folder: test_data_importers.py",
    "collate_regions": "a DataLoader's collate_fn of dataset samples: test_robust_api_sweep.py",
    "antehoc_parameter_groups": "an ante-hoc training step: test_models_antehoc*.py",
    "antehoc_pass_one_loss": "an ante-hoc training step: test_robust_api_sweep.py",
    "antehoc_pass_two_loss": "an ante-hoc training step: test_models_antehoc*.py",
    "bla_parameters": "the BLA modules' parameters: as bla_modules (swept)",
    "folded_batch_norms": "a context of a model and a probe: test_models_folding*.py",
    "ClassifierModule": "the Lightning module train builds: test_train_module.py",
    "fit": "trains: TrainConfig is swept; test_train_refusals.py",
    "evaluate_run": "evaluates a run: EvaluateOptions is swept; test_evaluate_refusals_up_front.py",
    "compare_runs": "evaluates runs: edited by another helper this session (compare's checks)",
    "load_eval_data": "reads a run's data: test_evaluate_*",
    "export_run": "exports a run: test_export_refusals.py",
    "verify_onnx": "an exported file: test_export_verify.py",
    # report: results dicts of evaluate, and the files they write
    "all_tables": "results dicts: test_report_bad_input.py, test_report_nonfinite.py",
    "faithfulness_table": "results dicts: test_report_bad_input.py",
    "lime_table": "results dicts: test_report_bad_input.py",
    "localization_table": "results dicts: test_report_bad_input.py",
    "model_and_lap_table": "results dicts: test_report_bad_input.py",
    "other_localization_table": "results dicts: test_report_bad_input.py",
    "runs_table": "results dicts: test_report_bad_input.py",
    "stability_table": "results dicts: test_report_bad_input.py",
    "timing_table": "results dicts: test_report_bad_input.py",
    "tables_markdown": "results dicts: test_report_bad_input.py",
    "render_table": "a Table: test_report_html.py",
    "write_tables": "results dicts: test_report_outputs.py",
    "write_report": "results dicts: test_report_outputs.py",
    "plot_iou_bars": "results dicts: test_report_plots.py",
    "plot_keep_k": "results dicts: test_report_plots.py",
    # io
    "as_path": "the check itself: swept through every path argument",
    "fitting_path": "the command line's path-length check: swept through every path option by "
    "tests/cli/test_cli_fuzz.py",
    "atomic_path": "a context manager: its path is checked on entry, swept through atomic_write",
    "atomic_folder": "a context manager: its path is checked on entry (as_path)",
    "comparison_methods": "takes no argument",
}
