"""The integrity record keeps one previous digest: a process killed between recording a new
file's SHA-256 and renaming the file into place leaves the old file, which must still load;
any other content is refused. Digests by hashlib, by hand."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from torchlap.runs import CONFIG_FILE, RUN_FORMAT, RunError, check_integrity, record_integrity


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_previous_digest_is_accepted_and_only_it(tmp_path: Path) -> None:
    """Recorded A then B: content A or B passes, C fails; after recording C, A fails."""
    run = tmp_path / "run"
    run.mkdir()
    (run / CONFIG_FILE).write_text(json.dumps({"format": RUN_FORMAT}))
    path = run / "weights.bin"
    path.write_bytes(b"A")
    record_integrity(run, path)
    check_integrity(run, path)
    record_integrity(run, path, digest=_sha(b"B"))  # recorded, not yet renamed into place
    record = json.loads((run / CONFIG_FILE).read_text())["integrity"]["weights.bin"]
    assert record == {"sha256": _sha(b"B"), "previous": _sha(b"A")}
    check_integrity(run, path)  # the old file: the killed write's leftover
    path.write_bytes(b"B")
    check_integrity(run, path)
    path.write_bytes(b"C")
    with pytest.raises(RunError, match=r"weights\.bin is damaged or was changed"):
        check_integrity(run, path)
    record_integrity(run, path)  # C recorded: B is the previous one, A no longer passes
    path.write_bytes(b"A")
    with pytest.raises(RunError, match=r"damaged or was changed"):
        check_integrity(run, path)
