"""The README as a newcomer uses it: the "Ten lines" example runs and prints what its comments
say, and the "Command line" table names every command and flag of ``torchlap --help``, with
the defaults the commands have."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from torchlap.cli import command_tree

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def _section(heading: str) -> str:
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## )", README, re.M | re.S)
    assert match, f"README.md has no section '## {heading}'"
    return match.group(1)


def _leaves(command, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    subs = getattr(command, "commands", None)
    if not subs:
        return {path: command}
    found: dict[tuple[str, ...], object] = {}
    for name, sub in subs.items():
        found.update(_leaves(sub, (*path, name)))
    return found


def _options(command) -> dict[str, object]:
    """``--flag`` (each long name, secondary ``--no-...`` too) -> the option's default."""
    names: dict[str, object] = {}
    for param in command.params:
        if getattr(param, "param_type_name", "") != "option":
            continue
        for name in (*param.opts, *param.secondary_opts):
            if name.startswith("--"):
                names[name] = param.default
    return names


COMMANDS = _leaves(command_tree())


def test_ten_lines_runs_and_prints_every_lap_map() -> None:
    block = re.search(r"```python\n(.*?)```", _section("Ten lines"), re.S).group(1)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(block, "README.md: Ten lines", "exec"), {})
    lines = printed.getvalue().splitlines()
    # "LAPs in blocks 2-4 + global pool", maps (B, heads, H, W) and scores (B, 1, H, W)
    assert [line.split()[0] for line in lines] == [
        "layer2.0.lap", "layer3.0.lap", "layer4.0.lap", "avgpool"
    ]  # fmt: skip
    assert "torch.Size([4, 1, 56, 56]) torch.Size([4, 1, 56, 56])" in lines[0]
    assert "torch.Size([4, 1, 7, 7]) torch.Size([4, 1, 7, 7])" in lines[-1]


def test_command_line_table_names_every_command_and_flag() -> None:
    section = _section("Command line")
    missing_commands = [" ".join(p) for p in COMMANDS if f"torchlap {' '.join(p)}" not in section]
    assert not missing_commands, f"`torchlap --help` commands not in the table: {missing_commands}"
    missing_flags = sorted(
        f"{' '.join(path)} {flag}"
        for path, command in COMMANDS.items()
        for flag in _options(command)
        if flag not in ("--help", "--quiet", "--verbose") and not re.search(rf"{flag}\b", section)
    )
    assert not missing_flags, f"flags missing from README's Command line: {missing_flags}"


def _spans(section: str):
    """(command, the flags of one backticked ``torchlap ...`` span) per command the span names."""
    for span in re.findall(r"`(torchlap [^`]+)`", section):
        words = span.split()[1:]
        heads = words[0].split("/") if words else []
        for head in heads:
            for depth in (2, 1):
                path = (head, *words[1:depth])
                if path in COMMANDS:
                    yield path, span
                    break


def test_command_line_table_flags_exist_with_their_defaults() -> None:
    wrong = []
    for path, span in _spans(_section("Command line")):
        options = _options(COMMANDS[path])
        for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", span):
            if flag not in options and flag != "--help":
                wrong.append(f"torchlap {' '.join(path)} has no {flag}")
        for flag, value in re.findall(r"\[(--[a-z][a-z0-9-]*) ([^\]\s]+)\]", span):
            default = options.get(flag)
            if default is None or re.match(r"^[A-Z]", value) or "|" in value or "..." in value:
                continue  # a placeholder, a choice or a default the command computes
            same = (
                float(value) == default
                if isinstance(default, float) or (isinstance(default, int) and value.isdigit())
                else value == str(default)
            )
            if not same:
                wrong.append(f"torchlap {' '.join(path)} [{flag} {value}]: default is {default!r}")
    assert not wrong, wrong
