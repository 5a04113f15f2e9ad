"""What the file fuzzer (``test_robust_file_fuzz.py``) expects of each mutation that is not
refused: the cases that must give the clean file's result, the ones taken with another result
(each with the reason), refusals that name something other than the mutated key, the known
gaps (strict xfails) and the regressions the fast variant always runs."""

from __future__ import annotations

#: data mutations that must give the clean folder's result (``data check`` output, samples)
SAME = {
    "file-bom": "a BOM is part of UTF-8 (README: 'a BOM is fine')",
    "file-crlf": "CSV line ends are either",
    "file-blank-lines": "a blank line holds no row (the csv module skips it)",
    "image-spaces": "fields are stripped: a path never starts or ends with a space",
    "image:16-bit": "16-bit greys are scaled to [0, 1] as 8-bit ones",
    "image:la": "alpha is not a colour (README); an opaque LA image is its L image",
    "mask:16-bit": "a mask pixel is region when it is non-zero, whatever the depth",
    "mask:la": "alpha is not a colour; the grey values are the same",
    "mask:cmyk": "any non-zero colour channel is region",
    "mask:p-transparent": "palette masks are read by their colours; the transparent index is "
    "black background in the clean mask",
    "mask:grey-values": "a mask pixel is region when any channel is non-zero (README), 128 as 255",
}
#: data mutations torchlap takes with another result (label -> why that is right)
DATA_ACCEPTED = {
    "column-deleted:split": "split is optional: a seeded, class-stratified split is made",
    "column-renamed:split": "an unknown column is ignored with a warning; no split column: a "
    "seeded split is made",
    "column-deleted:mask": "mask is optional: the mask is the union of the boxes",
    "column-renamed:mask": "an unknown column is ignored with a warning; masks from the boxes",
    "cell:mask=empty": "an empty mask field: the mask is the union of the row's boxes",
    "cell:x_min=float": "box coordinates are real pixel positions (the row's mask file gives "
    "its region)",
    "cell:y_min=float": "box coordinates are real pixel positions",
    "row-duplicated": "one row per box: a repeated row adds the same box again, whose union "
    "(the mask) is unchanged",
    "image:cmyk": "a colour mode is converted to the run's channels (CMYK's grey differs by "
    "the conversion's rounding)",
    "image:p-transparent": "alpha is dropped with a warning, as torchvision's ImageFolder does",
    **{
        f"cell:label={value}": "a label is a class name: a folder's classes are the names it holds"
        for value in ("text", "nan", "inf", "-1", "1e30", "float")
    },
    "label-unknown-class": "a folder's classes are the names it holds (a run's classes are "
    "checked by evaluate against the run)",
}
#: config.json keys ``load_run`` does not read: records of how the run was trained
RECORD_KEYS = {
    "torchlap_version": "the version that wrote the run, informational",
    "input": "a description of the expected input, informational",
    "losses": "the training losses, a record",
    "seed": "the training seed, a record (evaluate's own --seed is used)",
    "shuffle_labels": "a training option, a record",
    "data": "the training data, a record (explain takes images)",
    "phases": "the training phases, a record",
    "lap_options": "the LAP options given, a record (model.lapify builds the model)",
    "selection": "the epoch selection, a record",
    "balanced_batches": "a training option, a record",
    "model.lap": "the --lap option given, a record (model.lapify builds the model)",
    "model.pretrained": "the starting weights of training; the run's own weights are loaded",
    "model.lapify.0.where": "the --lap option given, a record (sites are replayed)",
    "model.lapify.0.lap_names": "the names lapify gave, a record (sites are replayed)",
}
#: other accepted config.json mutations (label -> why)
CONFIG_ACCEPTED = {
    "config-deleted:format_version": "runs written before it was recorded: version 1",
    "config-deleted:integrity": "runs written before integrity was recorded load unchecked",
    "config-deleted:lap_layers": "runs written before it was recorded: the model's LAP layers",
    "config-deleted:train": "runs written before the options were recorded",
    "config:train=dict": "the options a run was trained with; loading reads image_size only",
    "config-deleted:train.image_size": "older train records; the run's image_size is read",
    "config:train.image_size=null": "older train records; the run's image_size is read",
    "config-deleted:model.lapify.0.head_hidden": "records before it existed: shared",
    "config-deleted:model.lapify.0.input_size": "optional (lapify probes the sites' shapes)",
    "config:model.lapify.0.input_size=null": "optional (lapify probes the sites' shapes)",
    "config-deleted:concept_sets.n_classes": "optional in what ConceptSets.to_dict() writes",
    **{
        f"config:model.lapify.0.alpha={value}": "any finite float: alpha is a parameter, the "
        "trained value comes from model.safetensors"
        for value in ("-1", "huge")
    },
}
#: results.json keys the report does not read (key -> why)
RESULTS_UNREAD = {
    "format": "the report reads the sections, not the format stamp",
    "options": "the options of the evaluation, not shown in the tables",
    "environment": "how the evaluation ran (versions, threads, processes), not shown in the tables",
}
#: why the report takes the other results.json mutations it takes (kind -> why; the keys of
#: "null" and "dict" in RESULTS_NULL / RESULTS_DICT)
RESULTS_ACCEPTED = {
    "deleted": "every section is optional: a partial or older evaluation shows what it has",
    "null": "these sections are optional, null reads as none",
    "dict": "a section of named entries whose unknown names are ignored (a newer torchlap's)",
}
RESULTS_NULL = {"examples", "skipped", "methods", "maps"}
RESULTS_DICT = {"run", "data", "protocol", "lap_predictors", "localization", "faithfulness",
                "timing", "examples", "skipped", "methods", "maps"}  # fmt: skip
#: refusals that name something other than the mutated key (label -> the name, why)
NAMED_BY = {
    "config:integrity=null": "SHA-256",  # null reads as an empty record: the weights are an
    # unrecorded file, named with what to do (resume the run)
    "config-deleted:discriminative_scorers": "discriminative_scorer",  # runs from before the
    # key had none: the weights then hold the scorers' tensors, which the error names
    "config:concept_sets.mapping=dict": "class keys",  # the mapping's keys, named as such
    "resnet18/config-deleted:model.in_channels": "conv1",  # reads as torchvision's 3: the
    # weights' first convolution does not fit, which the error names
    "resnet18/config-deleted:model.lapify": "lapify",  # no LAP layer: named as lapify's
}

#: (case label) -> why it misses the contract (strict xfail)
KNOWN_GAPS: dict[str, str] = {}


#: cases that failed before the fix they came with: always in the fast variant
REGRESSIONS = {
    "config:lap_layers=string", "config:lap_layers=nan", "config:lap_layers=dict",
    "config:lap_layers=null", "config:model.arch=list", "config:model.arch=dict",
    "config-deleted:model.num_classes", "concept-sets-bom", "dicom:Rows=9",
    "dicom:PhotometricInterpretation='YBR_FULL'", "dicom:PixelData=b''",
    "dicom:PhotometricInterpretation='RGB'", "config-deleted:model.in_channels",
    # strict xfails of the first version, closed after merging
    "config:model.num_classes=huge", "config:model.in_channels=huge", "config:in_channels=huge",
    "config:concept_sets.n_concepts=huge", "config:model.lapify.0.n_concepts=huge",
    "config:model.lapify.0.hidden_channels=huge", "config:model.lapify.0.input_size=huge",
    "concept-sets:n_concepts=huge", "concept-sets-more-concepts",
}  # fmt: skip


#: picture damages that must give the clean picture's result (explain: its maps; an
#: ImageFolder: its ``data check`` output and samples)
PICTURE_SAME = {
    "16-bit": "16-bit greys are scaled to [0, 1] as 8-bit ones",
    "la": "alpha is not a colour; an opaque LA image is its L image",
}
#: picture damages taken with another result (label -> why)
PICTURE_ACCEPTED = {
    "cmyk": "a colour mode is converted to the run's channels (rounding differs)",
    "p-transparent": "alpha is dropped with a warning, as torchvision's ImageFolder does",
    "1x1": "an image without regions is resized to the run's (the data's) size, any size",
    "other-size": "an image without regions is resized to the run's (the data's) size",
}
#: --concept-sets mutations train takes (label -> why)
CONCEPT_SETS_ACCEPTED = {
    "concept-sets-deleted:n_classes": "optional: the mapping's keys count the classes",
    "concept-sets-crlf": "JSON white space",
    "concept-sets-bom": "a BOM is part of UTF-8, as in annotations.csv",
    "concept-sets-more-concepts": "without --n-concepts the run takes the file's count (a "
    "different --n-concepts is refused naming both)",
}
#: model-record mutations of a torchvision run it loads (besides the records of RECORD_KEYS)
TORCHVISION_ACCEPTED = {
    "config-deleted:model.arch_kwargs": "optional: no keyword arguments",
    "config:model.arch_kwargs=null": "optional: no keyword arguments",
}
#: DICOM mutations torchlap reads (label -> why)
DICOM_ACCEPTED = {
    "dicom-deleted:HighBit": "pydicom decodes by BitsAllocated/BitsStored; HighBit is not read",
    "dicom:HighBit=0": "HighBit is not read",
    "dicom:HighBit=40": "HighBit is not read",
    "dicom:BitsStored=1": "the header's depth: one stored bit of each byte is read, as stored",
    "dicom:PixelRepresentation=1": "the header's signed pixels: shifted to unsigned, as stored",
}
#: --pretrained file mutations train takes (label -> why)
PRETRAINED_ACCEPTED = {
    "weights-dropped": "pretrained weights may lack tensors of the new model (its LAP scorers, "
    "a new head), which keep their initialisation",
}
_NUMBER_KINDS = ("null", "nan", "-1", "huge")  # a number or None (NaN shown as missing)
_COUNT_KINDS = ("deleted", "null", "nan", "huge")  # a count >= 0 or None (NaN: missing)
_METRIC = "localization.lap.iou_topk"
#: nested results.json entries the report takes (path -> (the kinds taken or "all", why))
RESULTS_NESTED_ACCEPTED: dict[str, tuple[tuple[str, ...] | str, str]] = {
    f"{_METRIC}.value": (_NUMBER_KINDS, "a metric's value is a number or None; NaN/inf are "
                         "shown as missing (report.as_runs); its range is the metric's"),
    f"{_METRIC}.higher_is_better": (("deleted", "null"), "optional: no bold then"),
    f"{_METRIC}.n": (_COUNT_KINDS, "a count or None, optional"),
    f"{_METRIC}.n_excluded": (_COUNT_KINDS, "a count or None, optional"),
    "faithfulness.lap.keep_top_k.10.top1_vs_label.value": (_NUMBER_KINDS, "as a metric value"),
    "stability.lap.0.1.change_inc.value": (_NUMBER_KINDS, "as a metric value"),
    "timing.lap.seconds": (("deleted", *_NUMBER_KINDS), "a number or None, shown as given"),
    "maps.lap.n_flat": (("deleted", *_NUMBER_KINDS), "a number or None, shown as given"),
    "methods.lap.display_name": ("all", "a name that is no text: the method's own name"),
    "examples.lap.best": ("all", "read by the example figures of evaluate, not the report"),
    "data.n_images": ("all", "the data section is shown as text, as given"),
    "data.label_counts": ("all", "counts that are no list of counts: the chance level of "
                          "older results.json without them (sensitivity/specificity counts)"),
    "protocol.metrics_revision": ("all", "only compared between runs for equality (glance "
                                  "warns when runs differ)"),
}  # fmt: skip
