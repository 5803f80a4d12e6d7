"""Shell completion of the ``axonml`` command: the scripts Typer prints, and the completion protocol itself.

A shell completes ``axonml tr<TAB>`` by running the program again with ``_AXONML_COMPLETE=complete_bash``
(or ``complete_zsh``, ...) and the words typed so far in the environment; the program prints the
candidates instead of running a command. These tests run that protocol in real subprocesses.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from axonml.cli.main import app

NONDIFF_NAMES: list[str] = []

MODULE = [sys.executable, "-m", "axonml.cli.main"]
ENTRY = Path(sys.executable).parent / "axonml"  # the console script of `pip install -e .`
VAR = "_AXONML_COMPLETE"  # Typer's "_{PROG}_COMPLETE" for the program name "axonml"
# Typer picks the shell of --show-completion/--install-completion from the process tree (shellingham); with
# this variable set, those options take the shell's name instead, so the tests do not depend on their parent
NAMED_SHELL = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_COMPLETE")}
    env.update(extra)
    return env


def complete(program: list[str], words: str, shell: str = "bash") -> list[str]:
    """The candidates ``program`` offers for the last of ``words`` (one being typed), as a shell asks."""
    if shell == "bash":
        env = _env(**{VAR: "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1)})
    else:  # zsh and fish send the whole line in _TYPER_COMPLETE_ARGS
        env = _env(**{VAR: f"complete_{shell}", "_TYPER_COMPLETE_ARGS": words,
                      "_TYPER_COMPLETE_FISH_ACTION": "get-args"})
    r = subprocess.run(program, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


@pytest.fixture(scope="module")
def entry() -> list[str]:
    if not ENTRY.is_file():
        pytest.skip("the `axonml` console script is not installed (pip install -e .)")
    return [str(ENTRY)]


def test_the_bash_script_of_the_axonml_command(entry: list[str]) -> None:
    r = subprocess.run([*entry, "--show-completion", "bash"], capture_output=True, text=True, env=_env(**NAMED_SHELL))
    assert r.returncode == 0, r.stderr
    assert f"{VAR}=complete_bash" in r.stdout and "complete -o default -F _axonml_completion axonml" in r.stdout
    r = subprocess.run([*entry, "--show-completion", "zsh"], capture_output=True, text=True, env=_env(**NAMED_SHELL))
    assert r.returncode == 0 and "#compdef axonml" in r.stdout and f"{VAR}=complete_zsh" in r.stdout


def test_the_bash_script_of_python_dash_m() -> None:
    r = subprocess.run([*MODULE, "--show-completion", "bash"], capture_output=True, text=True, env=_env(**NAMED_SHELL))
    assert r.returncode == 0, r.stderr
    assert f"{VAR}=complete_bash" in r.stdout and r.stdout.rstrip().endswith("axonml")


def test_commands_complete(entry: list[str]) -> None:
    assert complete(entry, "axonml tr") == ["train"]
    everything = complete(entry, "axonml ")
    assert {"train", "resume", "eval", "predict", "inspect", "new", "version", "gpu"} <= set(everything)
    assert set(complete(entry, "axonml re")) == {c for c in everything if c.startswith("re")} >= {"resume"}
    assert {"list", "info", "select"} <= set(complete(entry, "axonml gpu "))  # sub-commands of a group


def test_options_of_a_subcommand_complete(entry: list[str]) -> None:
    assert set(complete(entry, "axonml train --dat")) == {"--dataset", "--data-root"}
    assert {"--epochs", "--wandb", "--json"} <= set(complete(entry, "axonml train --"))
    assert set(complete(entry, "axonml new x --template ")) == {"mlp", "cnn", "resnet", "transformer"}
    zsh = "\n".join(complete(entry, "axonml train --dat", shell="zsh"))
    assert '"--dataset"' in zsh and "mnist" in zsh  # zsh gets each option's help text too
    assert complete(entry, "axonml train --epo", shell="fish") == ["--epochs\tEpochs to train."]


def test_completion_does_not_run_the_command(entry: list[str], tmp_path: Path) -> None:
    env = _env(**{VAR: "complete_bash", "COMP_WORDS": "axonml new proj", "COMP_CWORD": "2"})
    r = subprocess.run([*entry, "new", "proj"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not (tmp_path / "proj").exists()


def test_install_completion_writes_the_script_for_the_shell(entry: list[str], tmp_path: Path) -> None:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    env = _env(HOME=str(tmp_path), **NAMED_SHELL)
    r = subprocess.run([*entry, "--install-completion", "bash"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    script = tmp_path / ".bash_completions" / "axonml.sh"
    assert script.is_file() and f"{VAR}=complete_bash" in script.read_text()
    assert str(script) in (tmp_path / ".bashrc").read_text()
    # a real bash sources it and asks the program for the candidates of "axonml tr"
    probe = (f"source {script}; COMP_WORDS=(axonml tr); COMP_CWORD=1; _axonml_completion axonml; "
             'printf "%s\\n" "${COMPREPLY[@]}"')
    r = subprocess.run(["bash", "-c", probe], env={**env, "PATH": f"{ENTRY.parent}:{env.get('PATH', '')}"},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.split() == ["train"], r.stdout + r.stderr


def test_help_lists_the_completion_options() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "--install-completion" in result.output and "--show-completion" in result.output
