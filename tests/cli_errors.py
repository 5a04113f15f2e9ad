"""The one ``Error`` line of a refused command, shared by the refusal tests (not a test module)."""

from typer.testing import CliRunner

from torchlap.cli import app


def error_line(args: list[str]) -> str:
    """Run ``torchlap ARGS``; check it exits with code 2 and prints one ``Error`` line, and
    return that line."""
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (result.exit_code, result.output)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.stderr
    return errors[0]
