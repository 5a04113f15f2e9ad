"""mkdocs hooks: README sections included at build time (never copied), and the CLI reference
generated from the ``torchlap`` command itself.

``<!-- readme: Heading -->`` in a page becomes the README section under ``## Heading`` or
``### Heading`` (up to the next heading of the same or a higher level), its sub-headings
shifted so they sit under the page title; links into ``docs/`` are rewritten to the site's
paths and other repository-relative links become plain text (they are files of the
repository, not pages). ``<!-- cli-reference -->`` becomes every command's help and options.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_README = re.compile(r"<!-- readme: (.+?) -->")
_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def readme_section(heading: str, readme: str | None = None) -> str:
    """The README text under ``heading`` (without the heading line)."""
    text = readme if readme is not None else (ROOT / "README.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"^(#{2,6}) (.*)$", line)
        if match and match.group(2).strip() == heading:
            level = len(match.group(1))
            body = []
            for following in lines[index + 1 :]:
                deeper = re.match(r"^(#{1,6}) ", following)
                if deeper and len(deeper.group(1)) <= level:
                    break
                body.append(following)
            return _rewrite("\n".join(body), level)
    raise ValueError(f"README.md has no section {heading!r} (docs page marker)")


def _rewrite(text: str, level: int) -> str:
    def link(match: re.Match) -> str:
        bang, label, target = match.groups()
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            return match.group(0)
        if target.startswith("docs/"):
            return f"{bang}[{label}]({target.removeprefix('docs/')})"
        return f"`{label}`" if not bang else label

    text = _LINK.sub(link, text)
    shift = level - 1  # "### Sub" under a "## Section" becomes "## Sub" under the page title
    return re.sub(r"^(#{3,6}) ", lambda m: "#" * (len(m.group(1)) - shift) + " ", text, flags=re.M)


def cli_reference() -> str:
    """Every ``torchlap`` command: usage, help text and options, read from the click tree."""

    from torchlap.cli import command_tree

    root = command_tree()
    parts: list[str] = []

    def walk(command: Any, path: list[str]) -> None:
        name = " ".join(path)
        if path[1:]:
            parts.append(f"## `{name}`\n")
        parts.append((command.help or "").strip().replace("\n\n", "\n\n") + "\n")
        rows = []
        for param in command.params:
            if getattr(param, "hidden", False) or param.param_type_name != "option":
                continue
            flags = ", ".join(f"`{o}`" for o in (*param.opts, *param.secondary_opts))
            default = "" if param.is_flag or param.default is None else f"`{param.default}`"
            help_text = " ".join((param.help or "").split()).replace("|", "\\|")
            rows.append(f"| {flags} | {default} | {help_text} |")
        if rows:
            parts.append("| option | default | meaning |\n|---|---|---|\n" + "\n".join(rows) + "\n")
        for sub_name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, [*path, sub_name])

    walk(root, ["torchlap"])
    return "\n".join(parts)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """mkdocs hook: expand the README and CLI markers of a page."""
    markdown = _README.sub(lambda m: readme_section(m.group(1)), markdown)
    if "<!-- cli-reference -->" in markdown:
        markdown = markdown.replace("<!-- cli-reference -->", cli_reference())
    return markdown
