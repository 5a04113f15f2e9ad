"""`make docs`: the documentation site builds in mkdocs' strict mode (no warning)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_docs_build_strictly(tmp_path) -> None:
    try:
        import material  # noqa: F401
        import mkdocs  # noqa: F401
        import mkdocstrings  # noqa: F401
    except ImportError as error:
        pytest.skip(
            f"mkdocs, mkdocs-material or mkdocstrings absent ({error}): pip install -e '.[docs]'"
        )
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    cli = (tmp_path / "site" / "cli" / "index.html").read_text()
    assert "torchlap export" in cli and "--quiet" in cli
    assert "<table>" in (tmp_path / "site" / "results" / "index.html").read_text()


def test_readme_sections_of_the_docs_exist() -> None:
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        from hooks import readme_section
    finally:
        sys.path.remove(str(ROOT / "docs"))
    readme = "## A\ntext [f](docs/figures/x.png) [s](src/a.py)\n### B\nmore\n## C\nno"
    assert readme_section("A", readme) == "text [f](figures/x.png) `s`\n## B\nmore"
    for page in (ROOT / "docs").glob("*.md"):
        for heading in __import__("re").findall(r"<!-- readme: (.+?) -->", page.read_text()):
            assert readme_section(heading)
