"""What :func:`torchlap.evaluate.common.guard_output_folder` takes for torchlap's own: an empty
log (an evaluation stopped before its first record) or one whose first line is a torchlap
record; a ``methods/`` folder of caches; results of torchlap's format. What it refuses, and
what ``apply=False`` leaves in place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from torchlap.evaluate.common import clear_output_folder, guard_output_folder

RECORD = "2026-01-02 03:04:05,678 WARNING torchlap.evaluate.core: lap: skipped\n"


def folder_with(tmp_path: Path, entries: dict[str, str]) -> Path:
    out = tmp_path / "out"
    for name, text in entries.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    out.mkdir(exist_ok=True)
    return out


@pytest.mark.parametrize("text", ["", RECORD, RECORD + "my own line\n"])
def test_an_empty_log_or_one_opening_with_a_record_is_torchlaps(tmp_path: Path, text) -> None:
    out = folder_with(tmp_path, {"evaluate.log": text})
    assert guard_output_folder(out, False) == []
    assert (out / "evaluate.log").read_text() == text


@pytest.mark.parametrize("text", ["\n", "my notes\n" + RECORD, RECORD.replace("WARNING", "NOTE")])
def test_a_log_not_opening_with_a_record_is_refused(tmp_path: Path, text) -> None:
    out = folder_with(tmp_path, {"compare.log": text})
    with pytest.raises(FileExistsError, match=r"holds compare\.log, which torchlap did not write"):
        guard_output_folder(out, False)


def test_a_methods_folder_of_caches_and_torchlaps_results_pass(tmp_path: Path) -> None:
    out = folder_with(
        tmp_path,
        {
            "methods/gradcam.json": json.dumps({"fingerprint": "abc", "results": {}}),
            "methods/lap.json": json.dumps({"fingerprint": "def", "results": {}}),
            "comparison.json": json.dumps({"format": "torchlap-comparison"}),
        },
    )
    assert guard_output_folder(out, False) == []
    (out / "methods" / "mine.json").write_text(json.dumps({"results": {}}))  # no fingerprint
    assert guard_output_folder(out, False) == []  # torchlap's comparison.json vouches for it
    (out / "comparison.json").unlink()
    with pytest.raises(FileExistsError, match=r"holds methods, which torchlap did not write"):
        guard_output_folder(out, False)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("results.json", json.dumps({"format": "torchlap-comparison"})),  # the other format
        ("comparison.json", json.dumps({"format": "torchlap-results"})),
        ("results.json", json.dumps(["torchlap-results"])),  # not a dict
        ("results.json", "{not json"),
    ],
)
def test_a_results_file_not_of_its_own_format_is_refused(tmp_path: Path, name, text) -> None:
    out = folder_with(tmp_path, {name: text})
    with pytest.raises(FileExistsError, match=rf"holds {name}, which torchlap did not write"):
        guard_output_folder(out, False)
    assert guard_output_folder(out, True) == [out / name]  # --force: replaced by the write


def test_apply_false_refuses_and_returns_but_changes_nothing(tmp_path: Path, caplog) -> None:
    out = folder_with(tmp_path, {"evaluate.log": "my notes\n", "tables.md": "mine\n"})
    foreign = guard_output_folder(out, True, apply=False)
    assert sorted(p.name for p in foreign) == ["evaluate.log", "tables.md"]
    assert (out / "evaluate.log").read_text() == "my notes\n" and not caplog.records
    clear_output_folder(out, foreign)  # once the rest is checked: the user's log goes
    assert not (out / "evaluate.log").exists() and (out / "tables.md").read_text() == "mine\n"
    said = [record.getMessage() for record in caplog.records]
    assert said == [f"--force: replacing {out / 'tables.md'}, {out / 'evaluate.log'}"]


def test_names_the_caller_does_not_write_are_left_alone(tmp_path: Path) -> None:
    out = folder_with(tmp_path, {"comparison.json": "mine\n", "compare.log": "mine\n"})
    names = ("results.json", "tables.md", "report.html", "figures", "methods")
    assert guard_output_folder(out, False, names=names, extra=("evaluate.log",)) == []
    with pytest.raises(FileExistsError, match=r"holds compare\.log, which torchlap"):
        guard_output_folder(out, False, names=names, extra=("compare.log",))


def test_a_path_that_is_a_file_is_refused_as_a_folder(tmp_path: Path) -> None:
    path = tmp_path / "out"
    path.write_text("mine\n")
    with pytest.raises(ValueError, match=r"--where .* exists and is not a folder; pass a folder"):
        guard_output_folder(path, True, option="--where")
    assert path.read_text() == "mine\n"


def test_a_log_it_cannot_read_is_not_taken_for_its_own(tmp_path: Path, monkeypatch) -> None:
    # (tests may run as root, who reads every file: the failing read is simulated)
    out = folder_with(tmp_path, {"evaluate.log": RECORD})
    real_open = Path.open

    def refuse(self: Path, *args, **kwargs):
        if self.name == "evaluate.log":
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(FileExistsError, match=r"holds evaluate\.log, which torchlap did not"):
        guard_output_folder(out, False)


def test_a_methods_folder_of_caches_alone_is_torchlaps(tmp_path: Path) -> None:
    out = folder_with(tmp_path, {"methods/gradcam.json": json.dumps({"fingerprint": "abc"})})
    assert guard_output_folder(out, False) == []


def test_a_results_file_it_cannot_read_is_refused_unless_forced(tmp_path, monkeypatch) -> None:
    import torchlap.evaluate.common as common
    import torchlap.evaluate.output_owner as output_owner

    out = folder_with(tmp_path, {"results.json": json.dumps({"format": "torchlap-results"})})

    def refuse(path, what="it"):
        raise PermissionError(13, f"cannot read {path} ({what})")

    monkeypatch.setattr(common, "read_file", refuse)
    monkeypatch.setattr(output_owner, "read_file", refuse)  # (the records are read there)
    with pytest.raises(PermissionError, match=r"--out .*: \[Errno 13\] cannot read .*results"):
        guard_output_folder(out, False)
    assert guard_output_folder(out, True) == [out / "results.json"]  # --force: replaced


def test_a_figures_folder_of_torchlap_figures_alone_is_torchlaps(tmp_path: Path) -> None:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    out = folder_with(tmp_path, {})
    (out / "figures").mkdir()
    mark = PngInfo()
    mark.add_text("Software", "torchlap (matplotlib 3)")
    Image.new("L", (4, 4)).save(out / "figures" / "keep_k.png", pnginfo=mark)
    assert guard_output_folder(out, False) == []
    Image.new("L", (4, 4)).save(out / "figures" / "mine.png")  # no torchlap mark
    with pytest.raises(FileExistsError, match=r"holds figures, which torchlap did not write"):
        guard_output_folder(out, False)


def test_an_entry_of_the_wrong_kind_is_named_with_its_kind(tmp_path: Path) -> None:
    out = folder_with(tmp_path, {"figures": "mine\n", "tables.md/notes.txt": "mine\n"})
    with pytest.raises(FileExistsError) as refused:
        guard_output_folder(out, True)
    said = str(refused.value)
    assert "tables.md is a folder; figures is not a folder" in said, said


def test_a_new_folder_under_a_file_is_refused_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    with pytest.raises(ValueError, match=r"--out"):
        guard_output_folder(tmp_path / "notes.txt" / "out", False)
    assert guard_output_folder(tmp_path / "new" / "out", False) == []  # to be made: fine


def test_an_unreadable_method_cache_is_refused_unless_forced(tmp_path, monkeypatch) -> None:
    import torchlap.evaluate.common as common

    out = folder_with(tmp_path, {"methods/gradcam.json": json.dumps({"fingerprint": "abc"})})

    def refuse(path, what="it"):
        raise PermissionError(13, f"cannot read {path} ({what})")

    monkeypatch.setattr(common, "read_file", refuse)
    with pytest.raises(PermissionError, match=r"cannot read .*gradcam\.json \(the method caches"):
        guard_output_folder(out, False)


def test_the_temp_files_of_a_killed_evaluation_are_removed(tmp_path: Path) -> None:
    # atomic_write's temp name: ".<name>.<pid>.<8 hex>.torchlap-tmp"; pid 2**22 + 1 is not alive
    stale = ".results.json.4194305.0123abcd.torchlap-tmp"
    out = folder_with(tmp_path, {stale: "{", "tables.md": "mine\n"})
    clear_output_folder(out, [])
    assert sorted(p.name for p in out.iterdir()) == ["tables.md"]
