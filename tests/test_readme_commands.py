"""The README's commands, as a new user types them: every ``python -m …``, ``bash run.sh …`` and
``make …`` line of its code blocks names a command that exists, and every option it spells
is one that command takes (its ``--help``); ``python -m`` typed with a Python that lacks the
dependencies runs the checkout's ``.venv`` instead (``core.entry``), and after
``make repo-path`` the venv's Python finds the packages from any folder."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core import entry

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINTS = ("preprocess", "train", "submission")


def readme_commands() -> list[list[str]]:
    """Each command line of the README's code blocks (continuations joined, comments and
    ``&&`` chains split), as tokens."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" # ", 1)[0].split("  #", 1)[0].strip()
            for part in line.split("&&"):
                tokens = part.split()
                if (
                    tokens[:2] == ["python", "-m"]
                    or tokens[:2] == ["bash", "run.sh"]
                    or tokens[:1] == ["make"]
                ):
                    commands.append(tokens)
    return commands


def options(tokens: list[str]) -> set[str]:
    """The options a command line spells (``--model``, ``-input``), placeholders' brackets off."""
    found = set()
    for token in tokens:
        token = token.strip("[]").split("=", 1)[0]
        if re.fullmatch(r"--?[a-z][a-z0-9-]*", token):
            found.add(token)
    return found


def help_text(module: str, argv: list[str], capsys) -> str:
    """``python -m module *argv --help``'s output, run in this process (a subprocess per
    command would cost seconds of imports each)."""
    cli = importlib.import_module(f"{module}.cli")
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--help"])
    assert exit_.value.code == 0, (module, argv)
    return capsys.readouterr().out


def test_the_readme_has_the_commands_this_test_reads():
    commands = readme_commands()
    modules = {c[2] for c in commands if c[0] == "python"}
    assert {"preprocess", "train"} <= modules <= set(ENTRY_POINTS)
    assert any(c[:2] == ["bash", "run.sh"] for c in commands) and any(c[0] == "make" for c in commands)


def test_every_python_command_of_the_readme_takes_its_options(capsys):
    checked = 0
    for tokens in readme_commands():
        if tokens[0] != "python":
            continue
        module = tokens[2]
        sub = [tokens[3]] if module == "train" else []
        text = help_text(module, sub, capsys)
        for option in options(tokens[3:]):
            assert re.search(rf"(^|[\s,\[]){re.escape(option)}\b", text), f"{' '.join(tokens)}: {option}"
        checked += 1
    assert checked >= 10


def test_every_run_sh_command_of_the_readme_takes_its_options():
    proc = subprocess.run(["bash", str(ROOT / "run.sh"), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for tokens in readme_commands():
        if tokens[:2] == ["bash", "run.sh"]:
            for option in options(tokens[2:]):
                assert re.search(rf"(^|[\s,]){re.escape(option)}\b", proc.stdout), (
                    f"{' '.join(tokens)}: {option}"
                )


def test_every_make_target_of_the_readme_exists():
    targets = sorted({t for tokens in readme_commands() if tokens[0] == "make" for t in tokens[1:]})
    assert "setup" in targets and "test" in targets
    for target in targets:
        # -n: print, run nothing; -q would exit 1 for a target merely out of date
        proc = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0 and "No rule to make target" not in proc.stderr, (target, proc.stderr)


def test_without_the_dependencies_the_message_says_what_to_run(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(entry, "REQUIRED", ("no_such_module_anywhere",))
    with pytest.raises(SystemExit) as exit_:
        entry.ensure_dependencies("train", root=tmp_path)  # a checkout without .venv
    message = str(exit_.value.code)
    assert "lacks no_such_module_anywhere" in message and "make setup" in message
    assert ".venv/bin/python -m train" in message and "source .venv/bin/activate" in message
    monkeypatch.setattr(entry, "REQUIRED", ("json",))
    entry.ensure_dependencies("train", root=tmp_path)  # all there: returns


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> Path:
    """A Python without the project's dependencies (a fresh venv, no pip): what a user's
    system ``python`` is."""
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("no .venv in the checkout (make setup builds it)")
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return venv


def test_python_without_the_dependencies_runs_the_checkouts_venv(bare_python, tmp_path):
    python = str(bare_python / "bin" / "python")
    proc = subprocess.run(
        [python, "-m", "train", "eval", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage: python -m train eval" in proc.stdout
    assert "lacks numpy, av" in proc.stderr and "tqdm, torch:" in proc.stderr  # training needs torch too
    assert ".venv/bin/python instead" in proc.stderr
    # from another folder the packages are not on its path until `make repo-path` puts them there
    proc = subprocess.run([python, "-m", "train", "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0 and "No module named train" in proc.stderr
    (bare_python / ".installed").touch()  # make's `venv` target: up to date, installs nothing
    make = subprocess.run(
        ["make", "-s", "repo-path", f"VENV={bare_python}"], cwd=ROOT, capture_output=True, text=True
    )
    assert make.returncode == 0, make.stderr
    proc = subprocess.run(
        [python, "-m", "train", "synth", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage: python -m train synth" in proc.stdout


def test_entry_points_quote_their_arguments_unchanged(bare_python):
    """The re-run gets the arguments exactly (spaces, quotes)."""
    python = str(bare_python / "bin" / "python")
    odd = "a folder with 'quotes' and spaces"
    proc = subprocess.run(
        [python, "-m", "submission", "-input", odd, "-output", "o.csv"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and f"input folder {odd} does not exist" in proc.stderr, proc.stderr


def test_makefile_and_readme_give_train_default_the_same_time():
    makefile = (ROOT / "Makefile").read_text()
    readme = (ROOT / "README.md").read_text()
    in_make = re.search(r"^train-default:.*?##.*?~(\d+) min", makefile, re.M)
    in_readme = re.search(r"^make train-default .*?~(\d+) min", readme, re.M)
    assert in_make and in_readme and in_make.group(1) == in_readme.group(1)
