"""The settings ``torchlap evaluate`` and ``compare`` refuse because the evaluation would
ignore them without a word: options of a method that is not evaluated, settings of a part of
the evaluation that does not run, settings no evaluated method reads (checked before a run is
read, from the options the user gave on the command line)."""

from __future__ import annotations

from torchlap.evaluate.options import EvaluateOptions
from torchlap.explainers import get

__all__ = ["refuse_ignored"]


def refuse_ignored(options: EvaluateOptions, given: set[str]) -> None:
    """``ValueError`` for a setting the evaluation would ignore without a word: options of a
    method not in ``--methods`` (every method that runs, the checks' included, is among them),
    ``--check-methods`` without ``--sanity``/``--grid-pg`` or naming a method not in
    ``--methods``, ``--tie-draws`` (given) with ``--ties index``, ``--lime-option`` without the
    LIME check (``bla`` not among ``--methods``, or ``--lime-images 0``). (The library's
    ``EvaluateOptions`` accepts them: the demo passes its RISE and SISE options and its check
    methods to every suite.)"""
    unused = [method for method in options.method_options if method not in options.methods]
    if unused:
        raise ValueError(
            f"--method-options gives options for {', '.join(unused)}, which is not evaluated "
            f"(--methods: {', '.join(options.methods)}); add it to --methods or drop its options"
        )
    if options.check_methods is not None and not (options.sanity or options.grid_pg):
        raise ValueError(
            "--check-methods chooses the methods of --sanity and --grid-pg, and neither is "
            "given: add --sanity or --grid-pg, or drop --check-methods"
        )
    unchecked = [m for m in options.check_methods or () if m not in options.methods]
    if unchecked:  # (none of them evaluated: EvaluateOptions.validate says so)
        raise ValueError(
            f"--check-methods names {', '.join(unchecked)}, which is not evaluated (--methods: "
            f"{', '.join(options.methods)}); the checks run on evaluated methods only: add it "
            "to --methods or drop it from --check-methods"
        )
    lime_given = options.lime_options or "lime_option" in given
    if lime_given and ("bla" not in options.methods or options.lime_images == 0):
        raise ValueError(
            "--lime-option sets paper 002's LIME check, which runs for a BLA run evaluated with "
            "bla among --methods and --lime-images > 0: add bla to --methods (and --lime-images "
            "N), or drop --lime-option"
        )
    _refuse_unused_settings(options, given)
    if "tie_draws" in given and options.ties != "random":
        raise ValueError(
            f"--tie-draws applies to --ties random only (the mean of seeded random "
            f"tie-breaks); --ties {options.ties} breaks ties one way: drop --tie-draws"
        )


#: settings given (off their defaults or not) that only the part named after them reads:
#: (the settings, whether that part runs, what turns it on)
_PART_SETTINGS = (
    (("sanity_images", "sanity_threshold"), lambda o: o.sanity, "--sanity"),
    (("grid_pg_shape", "grid_pg_grids", "grid_pg_confidence"), lambda o: o.grid_pg, "--grid-pg"),
    (("bootstrap_level",), lambda o: o.bootstrap_resamples > 0, "--bootstrap-resamples > 0"),
    (("lime_images",), lambda o: "bla" in o.methods or o.lime_images == 0, "bla among --methods"),
)


def _reads_lap_all_ranking(options: EvaluateOptions) -> bool:
    """Whether a method of ``options`` ranks pixels with ``--lap-all-ranking`` (``lap`` over
    every layer, "LAP All": :meth:`~torchlap.explainers.Explainer.ranking_options`)."""
    return any(
        get(m).ranking_options(dict(options.method_options.get(m, {})), options.lap_all_ranking)
        is not None
        for m in options.methods
    )


def _fits_a_threshold(options: EvaluateOptions) -> bool:
    """Whether a method of ``options`` is binarized at a global threshold fitted on the
    validation images (one without a native threshold: every method but LAP, which uses 0.5)."""
    return any(get(m).native_threshold is None for m in options.methods)


#: settings given (off their defaults or not) that no method of --methods reads:
#: (the settings, whether a method reads them, what they set, what reads them)
_METHOD_SETTINGS = (
    (
        ("lap_all_ranking",),
        _reads_lap_all_ranking,
        'how "LAP All" (lap\'s maps of every layer) ranks pixels',
        'lap over every layer (its default, "layer": "all")',
    ),
    (
        ("threshold_fit", "threshold_classifier"),
        _fits_a_threshold,
        "the global threshold fitted on the validation images that a method without a "
        "threshold of its own is binarized at",
        "a method without a threshold of its own (every method but lap, which binarizes at "
        "its own 0.5; e.g. gradcam)",
    ),
)


def _refuse_unused_settings(options: EvaluateOptions, given: set[str]) -> None:
    """``ValueError`` for a setting given on the command line whose part of the evaluation does
    not run (``--sanity-images`` without ``--sanity``, ``--grid-pg-grids`` without
    ``--grid-pg``, ``--bootstrap-level`` with ``--bootstrap-resamples 0``, ``--lime-images N``
    without ``bla`` among ``--methods``), or that no method of ``--methods`` reads
    (``--lap-all-ranking`` without ``lap`` over every layer, ``--threshold-fit`` and
    ``--threshold-classifier`` when every method binarizes at its own threshold, as ``lap``
    at 0.5): it would be ignored without a word (and recorded in the protocol as if used)."""
    for names, applies, *words in (*_PART_SETTINGS, *_METHOD_SETTINGS):
        unused = [name for name in names if name in given]
        if unused and not applies(options):
            flags = ", ".join("--" + name.replace("_", "-") for name in unused)
            verb = "sets" if len(unused) == 1 else "set"
            raise ValueError(f"{flags} {verb} {_why_unused(options, flags, *words)}")


def _why_unused(options: EvaluateOptions, flags: str, *words: str) -> str:
    """Why settings ``flags`` would be ignored: their part of the evaluation does not run
    (``words``: what turns it on), or no method reads them (``words``: what they set, and
    which methods read them)."""
    if len(words) == 1:
        (switch,) = words
        return (
            f"a part of the evaluation that runs only with {switch}, which is not given: add "
            f"{switch}, or drop {flags}"
        )
    what, readers = words
    return (
        f"{what}, which no method of --methods ({', '.join(options.methods)}) reads and would "
        f"be ignored: add {readers} to --methods, or drop {flags}"
    )
