"""Markdown tables: paper 000 Table I / II layouts, bolding of the best, '-' and 'n/a'."""

from __future__ import annotations

import copy
import os

import pytest
from report_synthetic import (
    METHOD_FACTS,
    lap_results,
    metric,
    parse_markdown_table,
    results_by_run,
    vanilla_results,
)

from torchlap.report import (
    all_tables,
    method_display_name,
    tables_markdown,
    write_tables,
)
from torchlap.report.tables import (
    faithfulness_table,
    lime_table,
    localization_table,
    model_and_lap_table,
    other_localization_table,
    stability_table,
    timing_table,
)


def row_by_labels(rows: list[list[str]], *labels: str) -> list[str]:
    matches = [row for row in rows if tuple(row[: len(labels)]) == labels]
    assert len(matches) == 1, (labels, rows)
    return matches[0]


def bold(cell: str) -> bool:
    return cell.startswith("**") and cell.endswith("**")


# -------------------------------------------------------------------------------- Table I


def test_table_one_layout_binary() -> None:
    header, rows = parse_markdown_table(model_and_lap_table(results_by_run()).to_markdown())
    assert header == [
        "Run",
        "Model performance: Acc.",
        "Model performance: Sens.",
        "Model performance: Spec.",
        "Model performance: BA",
        "LAP predictions: LAP_1",
        "LAP predictions: LAP_2",
        "LAP predictions: LAP_3",
        "Faithfulness to model: LAP_1",
        "Faithfulness to model: LAP_2",
        "Faithfulness to model: LAP_3",
    ]
    assert [row[0] for row in rows] == ["vanilla", "WS-LAP"]
    vanilla, lap = rows
    # fractions become percentages with two decimals; no LAP layer -> '-'
    assert vanilla[1:5] == ["95.22", "95.08", "95.37", "95.23"]
    assert vanilla[5:] == ["-"] * 6
    # best per column bold (WS-LAP wins every model metric); a None value is 'n/a'
    assert lap[1:5] == ["**96.58**", "**97.07**", "**96.05**", "**96.56**"]
    # LAP_1's 55.48 % of 50 images is not above the chance level of 50 % (as many positives as
    # negatives): marked; the other predictivities are
    assert lap[5:] == ["55.48†", "69.76", "88.11", "55.86", "n/a", "88.60"]


def test_table_one_names_lap_layers_in_forward_order() -> None:
    markdown = model_and_lap_table(results_by_run()).to_markdown()
    assert "LAP_1 = layer2.pool (binary), LAP_2 = layer3.pool (binary), LAP_3 = avgpool" in (
        markdown
    )


def test_table_one_multiclass_and_mixed_runs() -> None:
    imagenet = {
        "model": {"top1_accuracy": metric(0.7616), "top5_accuracy": metric(0.9285)},
        "lap_predictors": {"layer4.pool": {"rule": "learned", "predictivity": metric(0.7198)}},
    }
    header, rows = parse_markdown_table(
        model_and_lap_table({"LAP ResNet 50 (FT)": imagenet}).to_markdown()
    )
    assert header == [
        "Run",
        "Model performance: Top-1 Acc.",
        "Model performance: Top-5 Acc.",
        "LAP predictions: LAP_1",
        "Faithfulness to model: LAP_1",
    ]
    # one run only: nothing to compare, nothing bold; faithfulness key absent -> '-'
    assert rows == [["LAP ResNet 50 (FT)", "76.16", "92.85", "71.98", "-"]]
    # binary and multi-class runs together: the union of columns, '-' where absent
    header, rows = parse_markdown_table(
        model_and_lap_table({"binary": vanilla_results(), "multi": imagenet}).to_markdown()
    )
    labels = ("Acc.", "Sens.", "Spec.", "BA", "Top-1 Acc.", "Top-5 Acc.")
    assert header[1:7] == [f"Model performance: {label}" for label in labels]
    assert row_by_labels(rows, "binary")[5:7] == ["-", "-"]
    assert row_by_labels(rows, "multi")[1:5] == ["-"] * 4


def test_table_one_without_model_metrics_shows_binary_columns() -> None:
    header, rows = parse_markdown_table(model_and_lap_table({"empty": {}}).to_markdown())
    assert header == ["Run"] + [f"Model performance: {c}" for c in ("Acc.", "Sens.", "Spec.", "BA")]
    assert rows == [["empty", "-", "-", "-", "-"]]


# ------------------------------------------------------------------------------- Table II


def test_table_two_layout_and_best_per_row() -> None:
    header, rows = parse_markdown_table(localization_table(results_by_run()).to_markdown())
    methods = ["DL", "GC", "LAP", "my_method"]  # paper order, unknown names last and as-is
    assert header == (
        ["Run"]
        + [f"Thresholding: {m}" for m in methods]
        + [f"Top-Scored Selection: {m}" for m in methods]
    )
    vanilla = row_by_labels(rows, "vanilla")
    # LAP absent from the vanilla run -> '-'; None -> 'n/a'; best of each group bold
    assert vanilla[1:] == ["**24.37**", "9.34", "-", "n/a", "**20.44**", "7.14", "-", "15.00"]
    lap = row_by_labels(rows, "WS-LAP")
    # thresholding: LAP best; top-scored: DL (44.2901) and LAP (44.29) tie at 2 decimals, so
    # neither is bold and the tie is named once in the notes
    assert lap[1:] == ["24.37", "9.34", "**36.26**", "n/a", "44.29", "7.14", "44.29", "15.00"]
    markdown = localization_table(results_by_run()).to_markdown()
    assert markdown.count("Tied for the best") == 1
    assert "WS-LAP, Top-Scored Selection: DL = LAP (44.29)" in markdown


def test_table_two_direction_comes_from_the_metric() -> None:
    results = {"run": lap_results()}
    for method in results["run"]["localization"].values():
        for key in ("iou_threshold", "iou_topk"):
            if key in method:
                method[key]["higher_is_better"] = False
    _, rows = parse_markdown_table(localization_table(results).to_markdown())
    assert rows[0][1:5] == ["24.37", "**9.34**", "36.26", "n/a"]


def test_table_two_all_methods_and_display_names() -> None:
    names = [
        "sise",
        "antehoc",
        "rise",
        "bla",
        "scorecam",
        "lap",
        "relevance_cam",
        "guided_backprop",
        "gradcam",
        "guided_gradcam",
        "deeplift",
    ]
    localization = {m: {"iou_threshold": metric(0.1)} for m in names}
    results = {"r": {"localization": localization, "methods": METHOD_FACTS}}
    header, rows = parse_markdown_table(localization_table(results).to_markdown())
    expected = [
        "DL",
        "GGC",
        "GC",
        "GBP",
        "RC",
        "Score-CAM",
        "RISE",
        "SISE",
        "LAP",
        "BLA",
        "Ante-hoc",
    ]
    assert header[1:12] == [f"Thresholding: {m}" for m in expected]
    assert rows[0][12:] == ["-"] * 11  # no iou_topk anywhere
    assert rows[0][1:12] == ["10.00"] * 11  # all tied: a tie, not a wall of bold
    assert method_display_name("my_method", METHOD_FACTS) == "my_method"
    # results without the facts (written before they existed): names as given, first-seen order
    bare = {"r": {"localization": localization}}
    header, _ = parse_markdown_table(localization_table(bare).to_markdown())
    assert header[1:12] == [f"Thresholding: {m}" for m in names]


# -------------------------------------------------------------------------- faithfulness


def test_faithfulness_table_keep_k_drop_increase_win() -> None:
    header, rows = parse_markdown_table(faithfulness_table(results_by_run()).to_markdown())
    assert header == [
        "Run",
        "Method",
        "Top-1 vs prediction: keep 5%",  # numeric order, not string order
        "Top-1 vs prediction: keep 10%",
        "Top-1 vs prediction: keep 50%",
        "Perturbation: Drop %",
        "Perturbation: Increase %",
        "Perturbation: Win %",
    ]
    assert [tuple(row[:2]) for row in rows] == [
        ("vanilla", "DL"),
        ("vanilla", "GC"),
        ("WS-LAP", "DL"),
        ("WS-LAP", "GC"),
        ("WS-LAP", "LAP"),
    ]
    # Drop/Increase/Win are percentages already (not scaled); lower Drop is better;
    # the best is chosen within each run
    assert row_by_labels(rows, "vanilla", "GC")[2:] == [
        "**20.00**",
        "**30.00**",
        "**70.00**",
        "**40.00**",
        "**12.00**",
        "20.00",
    ]
    assert row_by_labels(rows, "vanilla", "DL")[2:] == [
        "5.00",
        "10.00",
        "50.00",
        "55.50",
        "8.00",
        "-",
    ]
    assert row_by_labels(rows, "WS-LAP", "LAP")[2:] == [
        "**40.00**",
        "**50.00**",
        "**90.00**",
        "**10.00**",
        "**30.00**",
        "**45.00**",
    ]
    assert not any(bold(cell) for cell in row_by_labels(rows, "WS-LAP", "GC")[2:])


def test_faithfulness_table_other_agreement() -> None:
    header, rows = parse_markdown_table(
        faithfulness_table(results_by_run(), "top5_vs_label").to_markdown()
    )
    assert header[2] == "Top-5 vs label: keep 5%"
    assert row_by_labels(rows, "WS-LAP", "LAP")[2] == "**54.00**"  # 0.6 * 0.9
    with pytest.raises(ValueError, match="agreement"):
        faithfulness_table(results_by_run(), "top1")


# -------------------------------------------------------------- other tables, all tables


def test_other_localization_table() -> None:
    header, rows = parse_markdown_table(other_localization_table(results_by_run()).to_markdown())
    assert header == ["Run", "Method", "EBPG", "mIoU (top 20%)", "Bbox", "Pointing game"]
    assert row_by_labels(rows, "vanilla", "DL")[2:] == [
        "**41.00**",
        "n/a",
        "**35.00**",
        "**60.00**",
    ]
    assert row_by_labels(rows, "vanilla", "my_method")[2:] == ["20.00", "-", "-", "-"]
    assert row_by_labels(rows, "WS-LAP", "LAP")[2:] == [
        "**60.00**",
        "**40.00**",
        "**50.00**",
        "**90.00**",
    ]


def test_stability_and_timing_tables() -> None:
    header, rows = parse_markdown_table(stability_table(results_by_run()).to_markdown())
    assert header == ["Run", "Method", "Noise 0.1: ΔDrop %", "Noise 0.1: ΔInc %"]
    # no best direction (paper 004 reads a larger jump at 0.4-0.5 as more stable): no bold
    assert row_by_labels(rows, "vanilla", "GC")[2:] == ["1.50", "2.00"]
    assert "reads a larger jump in change at the fractions 0.4-0.5" in (
        stability_table(results_by_run()).caption
    )
    assert row_by_labels(rows, "vanilla", "DL")[2:] == ["3.00", "n/a"]
    # the caption says why n/a is frequent there (the demo's one stability image)
    assert "on one image one of the two is always undefined" in " ".join(
        stability_table(results_by_run()).notes
    )
    header, rows = parse_markdown_table(timing_table(results_by_run()).to_markdown())
    assert header == ["Run", "Method", "Seconds", "Images / s"]
    assert row_by_labels(rows, "WS-LAP", "LAP")[2:] == ["**0.10**", "**500.0**"]
    assert row_by_labels(rows, "vanilla", "my_method")[2:] == ["10.00", "5.0"]


def test_all_tables_skips_empty_sections_and_accepts_one_results_dict() -> None:
    ids = [table.id for table in all_tables(results_by_run())]
    assert ids == [
        "table-runs",
        "table-model-lap",
        "table-localization",
        "table-other-localization",
        "table-faithfulness",
        "table-stability",
        "table-timing",
    ]
    only_model = {"run": {"name": "solo"}, "model": {"accuracy": metric(0.5)}}
    tables = all_tables(only_model)  # one results dict, named by run.name
    assert [table.id for table in tables] == ["table-runs", "table-model-lap"]
    assert tables[1].rows[0].labels == ("solo",)
    # an empty localization dict still gives a well-formed (empty) table
    assert localization_table({"r": {"localization": {}}}).columns == ()


def test_lime_table_shows_runs_with_a_bla_module_only() -> None:
    results = results_by_run()
    assert "table-lime" not in [table.id for table in all_tables(results)]
    results["vanilla"]["lime_spearman"] = {
        "bla": metric(0.4123), "gradcam": metric(-0.25), "patch": 9, "n_samples": 1000,
    }  # fmt: skip
    header, rows = parse_markdown_table(lime_table(results).to_markdown())
    assert header == ["Run", "BLA (soft)", "Grad-CAM"]
    assert rows == [["vanilla", "**0.412**", "-0.250"]]
    assert "vanilla: 9-px patches, 1000 LIME samples." in lime_table(results).to_markdown()
    # metrics revision 8 records the grid of BLA's cells; the note names it
    results["vanilla"]["lime_spearman"].update(grid=[7, 7], patch="32")
    assert "vanilla: 7x7 cells of 32-px patches" in lime_table(results).to_markdown()
    ids = [table.id for table in all_tables(results)]
    assert ids.index("table-lime") == ids.index("table-timing") - 1


def test_runs_table_lists_skipped_methods_and_notes() -> None:
    results = results_by_run()
    results["WS-LAP"]["notes"] = {"rise": "n_masks reduced to 500", "sise": ["a", "b"]}
    markdown = all_tables(results)[0].to_markdown()
    header, rows = parse_markdown_table(markdown)
    assert header == ["Run", "Data", "Split", "Images", "Run folder"]
    assert rows[0] == ["vanilla", "shapes", "test", "50", "runs/vanilla"]
    assert "vanilla: lap skipped (the model has no LAP layer)." in markdown
    assert "WS-LAP: rise: n_masks reduced to 500" in markdown
    assert "WS-LAP: sise: b" in markdown


def test_markdown_escapes_cell_breaks_and_html() -> None:
    results = {"a|b <i>": lap_results(), "plain": vanilla_results()}
    markdown = localization_table(results).to_markdown()
    assert "| a\\|b &lt;i&gt; |" in markdown
    header, rows = parse_markdown_table(markdown)
    assert len({len(row) for row in rows} | {len(header)}) == 1


def test_bad_input_raises_with_the_path() -> None:
    with pytest.raises(TypeError, match="dict of run name"):
        model_and_lap_table([1, 2]).to_markdown()
    broken = results_by_run()
    broken["WS-LAP"]["localization"]["gradcam"]["iou_topk"] = 0.5  # bare float, not a metric
    with pytest.raises(TypeError, match=r"\['WS-LAP'\]\['localization'\]\['gradcam'\]"):
        localization_table(broken).to_markdown()
    broken = results_by_run()
    broken["vanilla"]["model"]["accuracy"] = {"value": "high"}
    with pytest.raises(TypeError, match="number or None"):
        model_and_lap_table(broken).to_markdown()
    broken = results_by_run()
    broken["vanilla"]["faithfulness"]["gradcam"]["keep_top_k"]["ten"] = {}
    with pytest.raises(ValueError, match="percentages"):
        faithfulness_table(broken).to_markdown()


def test_write_tables_is_atomic(tmp_path: os.PathLike[str]) -> None:
    target = tmp_path / "out" / "tables.md"
    assert write_tables(results_by_run(), target) == target
    text = target.read_text(encoding="utf-8")
    assert text == tables_markdown(results_by_run())
    assert "**Table I.**" in text and "**Table II.**" in text
    broken = copy.deepcopy(results_by_run())
    broken["vanilla"]["model"] = "not a dict"
    with pytest.raises(TypeError, match="model"):
        write_tables(broken, target)
    assert target.read_text(encoding="utf-8") == text  # untouched on failure
    assert sorted(p.name for p in target.parent.iterdir()) == ["tables.md"]  # no temp file left


# ----------------------------------------------------- ties, chance marks, flat maps, split


def test_unique_best_is_bold_and_a_tie_is_named_once() -> None:
    results = {"a": lap_results(), "b": vanilla_results()}
    # three-way tie for the best in one Table II group, and a group where all values are equal
    for method in ("gradcam", "deeplift", "lap"):
        results["a"]["localization"][method]["iou_threshold"] = metric(0.5)
    results["a"]["localization"]["my_method"]["iou_threshold"] = metric(0.1)
    results["b"]["localization"]["my_method"]["iou_threshold"] = metric(0.3)
    table = localization_table(results)
    cells = {row.labels[0]: row.cells for row in table.rows}
    assert [c.text for c in cells["a"][:3]] == ["50.00", "50.00", "50.00"]
    assert not any(c.bold for c in cells["a"][:4])
    assert [c.tied for c in cells["a"][:4]] == [True, True, True, False]
    assert [c.bold for c in cells["b"][:4]] == [False, False, False, True]  # 30.00 unique
    notes = " ".join(table.notes)
    assert notes.count("Tied for the best") == 1
    assert "a, Thresholding: DL = GC = LAP (50.00)" in notes
    assert "a, Top-Scored Selection: DL = LAP (44.29)" in notes
    # every defined value equal: nothing bold, nothing underlined, one short mention
    equal = {"r": {"localization": {m: {"iou_topk": metric(0.2)} for m in ("lap", "rise")}}}
    table = localization_table(equal)
    assert not any(c.bold or c.tied for c in table.rows[0].cells)
    assert "All values equal, so nothing bold: r, Top-Scored Selection (20.00)." in table.notes


def test_at_chance_is_a_one_sided_test_against_the_chance_level() -> None:
    from torchlap.report.tables import at_chance

    # chance 0.5, n = 50: the bound is 0.5 + 1.6449 * sqrt(0.25 / 50) = 0.61631
    assert at_chance(0.6163, 0.5, 50) and not at_chance(0.6164, 0.5, 50)
    assert at_chance(0.0, 0.5, 50)  # below chance is not above it
    # chance 0.1, n = 400: 0.1 + 1.6449 * sqrt(0.09 / 400) = 0.124674
    assert at_chance(0.1246, 0.1, 400) and not at_chance(0.1247, 0.1, 400)
    # unknown n or value, degenerate chance: never marked
    assert not at_chance(0.5, 0.5, None) and not at_chance(None, 0.5, 50)
    assert not at_chance(0.5, 1.0, 50) and not at_chance(0.5, 0.5, 0)


def test_chance_marks_for_accuracies_and_region_metrics() -> None:
    multi = {
        "data": {"n_classes": 10, "region_fraction": 0.25},
        "model": {
            "top1_accuracy": metric(0.12, n=400),  # chance 1/10: bound 12.47 %
            "top5_accuracy": metric(0.60, n=400),  # chance 5/10: bound 54.11 %
        },
        "lap_predictors": {"l": {"predictivity": metric(0.125, n=400)}},
        "localization": {
            "gradcam": {"ebpg": metric(0.30, n=100), "pointing_game": metric(0.40, n=100)}
        },
    }
    _, rows = parse_markdown_table(model_and_lap_table({"m": multi}).to_markdown())
    assert rows[0][1:] == ["12.00†", "60.00", "12.50", "-"]  # 12.50 > 12.47: not marked
    _, rows = parse_markdown_table(other_localization_table({"m": multi}).to_markdown())
    # chance 0.25 with n = 100: bound 0.25 + 1.6449 * sqrt(0.1875 / 100) = 32.12 %
    assert rows[0][2:] == ["30.00†", "-", "-", "40.00"]
    assert "† not above chance" in other_localization_table({"m": multi}).to_markdown()
    # binary: accuracy against the majority share (40 positives, 60 negatives), BA against 1/2
    binary = {
        "model": {
            "accuracy": metric(0.66, n=100),  # chance 0.6: bound 68.06 %
            "sensitivity": metric(0.5, n=40),
            "specificity": metric(0.8, n=60),
            "balanced_accuracy": metric(0.65, n=100),  # chance 0.5: bound 58.22 %
        }
    }
    _, rows = parse_markdown_table(model_and_lap_table({"b": binary}).to_markdown())
    assert rows[0][1:] == ["66.00†", "50.00", "80.00", "65.00"]


def test_flat_maps_are_marked_and_explained() -> None:
    results = results_by_run()
    results["vanilla"]["maps"] = {
        "gradcam": {"n": 50, "n_flat": 50, "tolerance": 1e-6},
        "deeplift": {"n": 50, "n_flat": 0, "tolerance": 1e-6},
    }
    markdown = localization_table(results).to_markdown()
    _, rows = parse_markdown_table(markdown)
    vanilla = row_by_labels(rows, "vanilla")
    assert vanilla[1:5] == ["**24.37**", "9.34‡", "-", "n/a"]
    assert "‡ the method's maps are flat" in markdown
    _, rows = parse_markdown_table(faithfulness_table(results).to_markdown())
    assert all(
        cell.strip("*").endswith("‡")
        for cell in row_by_labels(rows, "vanilla", "GC")[2:]
        if cell != "-"
    )
    assert not any("‡" in cell for cell in row_by_labels(rows, "WS-LAP", "GC"))
    cell = localization_table(results).rows[0].cells[1]
    assert "50 of 50 maps flat, constant within 1e-06" in cell.note


def test_split_by_group_keeps_rows_and_cells() -> None:
    from torchlap.report.tables import split_by_group

    table = localization_table(results_by_run())
    assert table.split_groups
    parts = split_by_group(table)
    assert [p.id for p in parts] == [
        "table-localization-thresholding",
        "table-localization-top-scored-selection",
    ]
    assert [p.title for p in parts] == [
        "Table II (Thresholding)",
        "Table II (Top-Scored Selection)",
    ]
    assert parts[0].caption == table.caption and parts[1].caption == ""
    assert parts[0].notes == () and parts[1].notes == table.notes
    for part in parts:
        assert [r.labels for r in part.rows] == [r.labels for r in table.rows]
        assert all(not c.group for c in part.columns)
    joined = [a.cells + b.cells for a, b in zip(parts[0].rows, parts[1].rows, strict=True)]
    assert joined == [row.cells for row in table.rows]
    one_group = table_timing_table()
    assert split_by_group(one_group) == [one_group]


def table_timing_table():
    from torchlap.report.tables import timing_table

    return timing_table(results_by_run())


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("sanity", "x", r"\['sanity'\] must be a dict"),
        ("sanity", {"gradcam": 5}, r"\['sanity'\]\['gradcam'\] must be a dict"),
        ("sanity", {"gradcam": {"summary": {"ssim": "high"}}}, r"\['summary'\]\['ssim'\]"),
        ("sanity", {"gradcam": {"cascading": {"steps": [1]}}}, r"\['steps'\] must be a list"),
        ("grid_pointing_game", {"gradcam": 5}, r"\['grid_pointing_game'\]\['gradcam'\]"),
        ("grid_pointing_game", {"gradcam": {"scores": "x"}}, r"\['scores'\] must be a list"),
        ("notes", {"gradcam": 5}, r"\['notes'\]\['gradcam'\] must be a text or a list"),
        ("notes", "x", r"\['notes'\] must be a dict"),
    ],
)
def test_checks_and_notes_sections_are_checked(
    tmp_path: os.PathLike[str], key: str, value: object, match: str
) -> None:
    """sanity="x" and grid_pointing_game={"gradcam": 5} were AttributeErrors, notes a
    TypeError, deep inside the table code."""
    broken = results_by_run()
    broken["WS-LAP"][key] = value
    with pytest.raises(TypeError, match=r"\['WS-LAP'\].*" + match):
        write_tables(broken, tmp_path / "tables.md")
    assert not os.listdir(tmp_path)


def test_huge_values_are_shown_in_scientific_notation() -> None:
    """An IoU of 1e300 was printed as a 300-digit percentage."""
    runs = results_by_run()
    runs["WS-LAP"]["localization"]["gradcam"]["iou_topk"] = metric(1e300)
    text = localization_table(runs).to_markdown()
    assert "1.00e+302" in text
    assert "0" * 50 not in text
