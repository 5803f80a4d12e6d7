"""``axonml version`` through Typer's runner and a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

import axonml
from axonml.cli.main import app

NONDIFF_NAMES: list[str] = []


def test_version_json() -> None:
    result = CliRunner().invoke(app, ["version", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["axonml"] == axonml.__version__


def test_version_in_a_subprocess_and_bad_usage_exits_2() -> None:
    ok = subprocess.run([sys.executable, "-m", "axonml.cli.main", "version"], capture_output=True, text=True)
    assert ok.returncode == 0 and f"axonml: {axonml.__version__}" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "axonml.cli.main", "version", "--nope"], capture_output=True, text=True)
    assert bad.returncode == 2
