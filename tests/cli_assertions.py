"""Assertions shared by the command-line tests (importable: ``pythonpath`` in pyproject.toml)."""

from __future__ import annotations


def assert_one_line_error(result, *fragments: str) -> str:
    """Exit status 2, exactly one ``error: ...`` line on stderr holding every fragment, and no
    traceback; returns the line."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]
