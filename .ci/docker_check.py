"""The submission image, built and run for real: ``make docker-test`` (needs a Docker engine).

Builds the image on the local Debian base (CPU, offline: ``--network none``), then scores a few
clips from ../shared/media plus a broken file three ways, locked down as a challenge host runs
it (``LOCKED_DOWN``: read-only root filesystem and a tmpfs /tmp, no capabilities, 3 GB, 2 CPUs,
256 processes, no network; the input mounted read-only; uid 1000): the image's default
command, the TMC form (``-input /data/input/ -output /data/output/submission.csv``) and,
resuming that run from its journal, the DFDC form. Each CSV must have one row per video and
match ``bash run.sh`` on the same folder (probabilities within 1e-5). Also checks that the
image holds exactly the lock the host's venv installed and runs as a non-root user, and that
a run failing every video (a 0.01 s time-out) exits 5 with its CSV written. Prints the image
size and the build and run times; exits 1 on the first failed check.

``--gpu-image`` (``make docker-build-gpu``, not CI's ``make docker-test``: gigabytes) builds the
GPU form instead (``GPU=1``: onnxruntime-gpu and NVIDIA's CUDA wheels in place of onnxruntime)
and checks what a machine without a GPU can: it holds the lock with onnxruntime-gpu and
requirements-gpu.txt's pins instead of onnxruntime; its ONNX Runtime has the CUDA provider, whose
libraries all load from the pip wheels but the driver's (libcuda.so.1, which ``--gpus`` brings);
locked down, ``--check`` and the TMC form say that no GPU was found, fall back to ONNX Runtime's
CPU provider, and the CSV matches ``run.sh``'s within the same tolerance.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_MEDIA = ROOT.parent / "shared" / "media"
# Short clips of different kinds: a 224² face crop, a 1080p DFDC video, two faces side by
# side, two generated fakes (a talking head, a lip-sync re-render).
CLIPS = (
    "real/pcavs_Pose_Source_620900105.mp4",
    "real/dfdc_REAL_lynaeydofd.mp4",
    "real/ghost_2person.mp4",
    "fake/sadtalker_art_2__RD_Radio31_000.mp4",
    "fake/zzww_syncshow_wav2lip.mp4",
)
BROKEN = "broken.mp4"
TOLERANCE = 1e-5
RUN_TIMEOUT_S = 900


class CheckFailed(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def timed(cmd: list[str], expect: int = 0, **kw) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, **kw)
    elapsed = time.perf_counter() - start
    if proc.returncode != expect:
        raise CheckFailed(
            f"`{' '.join(cmd)}` exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    return proc, elapsed


def read_csv(path: Path) -> list[list[str]]:
    check(path.is_file(), f"{path} was not written")
    with open(path, newline="") as f:
        return list(csv.reader(f))


def compare(name: str, rows: list[list[str]], reference: list[list[str]], header: list[str]) -> None:
    """``rows`` (a CSV read whole) must hold the reference's videos, once each, in its order,
    with probabilities within TOLERANCE."""
    check(rows[0] == header, f"{name}: header {rows[0]}, expected {header}")
    names = [r[0] for r in rows[1:]]
    check(len(names) == len(set(names)), f"{name}: duplicate rows: {names}")
    check(names == [r[0] for r in reference[1:]], f"{name}: videos {names} differ from run.sh's")
    for (video, p), (_, q) in zip(rows[1:], reference[1:], strict=True):
        check(abs(float(p) - float(q)) <= TOLERANCE, f"{name}: {video} scored {p}, run.sh {q}")


def make_input(folder: Path) -> list[str]:
    """The clips (hard links where the filesystem allows: a bind mount cannot follow a
    symlink out of the folder) and a broken file; returns the video names."""
    folder.mkdir()
    for rel in CLIPS:
        src = SHARED_MEDIA / rel
        check(src.is_file(), f"{src} is missing from ../shared")
        dst = folder / src.name
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
    (folder / BROKEN).write_bytes(bytes(range(256)) * 20)  # no container format at all
    folder.chmod(0o755)
    for f in folder.iterdir():
        f.chmod(0o444)
    return sorted(f.name for f in folder.iterdir())


def writable_folder(path: Path) -> Path:
    path.mkdir()
    path.chmod(0o777)  # the image runs as uid 1000, not as whoever runs this check
    return path


# How a challenge host runs a submission: read-only root filesystem with a private /tmp, no
# capabilities, no privilege escalation, 3 GB, 2 CPUs, 256 processes, no network. The image
# must write nothing but /data/output and /tmp under these (README "The image").
LOCKED_DOWN = (
    "--read-only",
    "--tmpfs",
    "/tmp",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--memory",
    "3g",
    "--cpus",
    "2",
    "--pids-limit",
    "256",
    "--network",
    "none",
)


def docker_run(
    image: str, inp: Path, out: Path, *args: str, expect: int = 0
) -> tuple[subprocess.CompletedProcess, float]:
    mounts = ["-v", f"{inp}:/data/input:ro", "-v", f"{out}:/data/output"]
    return timed(["docker", "run", "--rm", *LOCKED_DOWN, *mounts, image, *args], expect=expect)


def lock_versions(freeze: str) -> dict[str, str]:
    out = {}
    for line in freeze.splitlines():
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
        if m:
            out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return out


# Run inside the image, which carries no pip: every installed distribution as name==version
# (pip freeze's form), and each one's declared dependencies checked against what is installed
# (pip check's job); exit 1 naming what is missing or at a wrong version.
INSTALLED = """
import importlib.metadata as md, sys
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
dists = {canonicalize_name(d.metadata["Name"]): d for d in md.distributions()}
problems = []
for name, dist in sorted(dists.items()):
    print(f"{name}=={dist.version}")
    for text in dist.requires or ():
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        got = dists.get(canonicalize_name(req.name))
        if got is None or not req.specifier.contains(got.version, prereleases=True):
            problems.append(f"{name} requires {req}, has {got.version if got else 'nothing'}")
print("\\n".join(problems), file=sys.stderr)
sys.exit(1 if problems else 0)
"""


def check_lock(image: str, gpu: bool = False) -> int:
    """The image holds exactly requirements.txt (what scoring needs; the training and
    development files stay out), each package at the host venv's version, and its install is
    consistent (every declared dependency present, as ``pip check`` says; the image has no pip:
    ``INSTALLED`` asks importlib.metadata). The GPU image: the same with
    onnxruntime replaced by requirements-gpu.txt's pins (onnxruntime-gpu and its CUDA wheels)."""
    lock = lock_versions((ROOT / "requirements.txt").read_text())
    host = lock_versions(
        subprocess.run([sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True).stdout
    )
    if gpu:
        lock.pop("onnxruntime")
        extra_pins = lock_versions(re.sub(r"\[[\w,]+\]", "", (ROOT / "requirements-gpu.txt").read_text()))
        lock.update(extra_pins)
        host.update(extra_pins)  # the host venv has none of them: the file's pins are the reference
    proc, _ = timed(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python", image, "-c", INSTALLED]
    )
    inside = lock_versions(proc.stdout)
    check("pip" not in inside, "the image still holds pip (the Dockerfile removes it)")
    freeze_hides = {"setuptools", "pip", "wheel", "distribute"}
    for name in sorted(set(lock) - freeze_hides):
        check(name in inside, f"image lacks {name} (the lock pins {lock[name]})")
        check(
            inside[name] == host.get(name),
            f"{name}: image has {inside[name]}, this venv {host.get(name)} (lock {lock[name]})",
        )
    extra = sorted(set(inside) - set(lock) - freeze_hides)
    check(not extra, f"the image holds packages requirements.txt does not list: {extra}")
    return len(lock) - len(freeze_hides & set(lock))


def build(image: str, base: str, gpu: bool = False) -> float:
    cmd = ["docker", "build", "--network", "none", "-t", image]
    cmd += ["--build-arg", f"BASE={base}", "--build-arg", "GPU=1" if gpu else "GPU=0", str(ROOT)]
    _, seconds = timed(cmd)
    return seconds


# In the GPU image: ONNX Runtime is the GPU build, preload_dlls loads every CUDA/cuDNN library
# from the pip wheels (it prints what fails), and the CUDA provider's library then lacks
# nothing but the driver's libcuda.so.1. ldd reads the wheels' folders from LD_LIBRARY_PATH.
GPU_LIBRARIES = """
import contextlib, glob, io, os, subprocess, onnxruntime as ort
assert "CUDAExecutionProvider" in ort.get_available_providers(), ort.get_available_providers()
printed = io.StringIO()
with contextlib.redirect_stdout(printed):
    ort.preload_dlls(cuda=True, cudnn=True, msvc=False)
assert not printed.getvalue().strip(), printed.getvalue()
capi = os.path.join(os.path.dirname(ort.__file__), "capi")
site = os.path.dirname(os.path.dirname(ort.__file__))
paths = ":".join(sorted(glob.glob(os.path.join(site, "nvidia", "*", "lib"))))
ldd = subprocess.run(["ldd", os.path.join(capi, "libonnxruntime_providers_cuda.so")],
                     capture_output=True, text=True, env={**os.environ, "LD_LIBRARY_PATH": paths}).stdout
missing = sorted(line.split()[0] for line in ldd.splitlines() if "not found" in line)
print(ort.__version__, "missing:", " ".join(missing))
"""
NO_GPU = "no GPU found (no NVIDIA driver (libcuda.so.1 not found)): the networks run on ONNX Runtime's CPU execution provider"


def check_gpu_image(image: str, inp: Path, out: Path, reference: list[list[str]]) -> tuple[str, float]:
    """What the GPU image can show without a GPU (see the module's docstring); returns its
    ONNX Runtime version and the TMC run's seconds."""
    proc, _ = timed(
        ["docker", "run", "--rm", *LOCKED_DOWN, "--entrypoint", "python", image, "-c", GPU_LIBRARIES]
    )
    version, _, missing = proc.stdout.strip().partition(" missing: ")
    check(
        missing == "libcuda.so.1",
        f"the CUDA provider's library lacks {missing or 'nothing'}, not just the driver",
    )
    proc, _ = docker_run(image, inp, out, "--check")
    check(NO_GPU in proc.stderr, f"--check did not say that no GPU was found:\n{proc.stderr}")
    check("check passed" in proc.stderr, f"--check did not pass:\n{proc.stderr}")
    proc, seconds = docker_run(
        image, inp, out, "-input", "/data/input/", "-output", "/data/output/submission.csv"
    )
    check(NO_GPU in proc.stderr, f"the run did not say that no GPU was found:\n{proc.stderr}")
    check("did not load" not in proc.stderr, f"a GPU provider was asked for without a GPU:\n{proc.stderr}")
    compare("GPU image, TMC form", read_csv(out / "submission.csv"), reference, reference[0])
    return version, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="avdf:ci")
    parser.add_argument("--base", default="avdf-base:bookworm", help="local base image (.ci/base-image)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (printed)")
    parser.add_argument(
        "--gpu-image", action="store_true", help="build and check the GPU form (GPU=1) instead (not in CI)"
    )
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="avdf-docker-check."))
    try:
        check(SHARED_MEDIA.is_dir(), f"{SHARED_MEDIA} is absent: the image check needs ../shared")
        for f in (
            "default.json",
            "detector.safetensors",
            "detector.json",
            "temporal_band.safetensors",
            "temporal_band.json",
        ):
            check(
                (ROOT / "weights" / f).is_file(), f"weights/{f} is missing: the shipped default (an ensemble)"
            )
        build_s = build(args.image, args.base, gpu=args.gpu_image)
        size = int(
            subprocess.run(
                ["docker", "image", "inspect", "-f", "{{.Size}}", args.image], capture_output=True, text=True
            ).stdout
        )
        print(f"image {args.image}: {size / 1e6:.0f} MB, built in {build_s:.0f} s", flush=True)
        user = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Config.User}}", args.image],
            capture_output=True,
            text=True,
        ).stdout.strip()
        check(user.split(":")[0] not in ("", "0", "root"), f"the image runs as {user or 'root'}")
        pinned = check_lock(args.image, gpu=args.gpu_image)

        inp = work / "input"
        videos = make_input(inp)
        host_out = work / "run_sh"
        _, host_s = timed(["bash", str(ROOT / "run.sh"), str(inp), str(host_out), "--no-progress"])
        reference = read_csv(host_out / "submission.csv")
        check([r[0] for r in reference[1:]] == videos, f"run.sh wrote rows for {reference[1:]}, not {videos}")
        failures = {r[0]: r[1] for r in read_csv(host_out / "submission_failures.csv")[1:]}
        check(set(failures) == {BROKEN}, f"run.sh failures: {failures} (only {BROKEN} should fail)")

        if args.gpu_image:
            version, gpu_s = check_gpu_image(args.image, inp, writable_folder(work / "gpu"), reference)
            print(
                f"docker-build-gpu passed: image {args.image} {size / 1e6:.0f} MB (requirements.txt with "
                f"onnxruntime-gpu {version} and its CUDA wheels), build {build_s:.0f} s; {pinned} pins as "
                f"locked; the CUDA provider's libraries load, only the driver's libcuda.so.1 missing (no GPU "
                f"here); {len(videos)} videos ({BROKEN} broken): run.sh {host_s:.0f} s, the image locked down "
                f"{gpu_s:.0f} s on the CPU provider, CSV equal to run.sh's within {TOLERANCE:g}; "
                f"'no GPU found' logged by --check and the run"
            )
            return 0

        default_out = writable_folder(work / "default")
        _, default_s = docker_run(args.image, inp, default_out)
        compare("default command", read_csv(default_out / "submission.csv"), reference, reference[0])
        check(
            (default_out / "submission.csv").stat().st_uid == int(user.split(":")[0]),
            "the CSV is not owned by the image's user",
        )

        tmc_out = writable_folder(work / "tmc")
        tmc_args = ["-input", "/data/input/", "-output", "/data/output/submission.csv"]
        _, tmc_s = docker_run(args.image, inp, tmc_out, *tmc_args)
        compare("TMC form", read_csv(tmc_out / "submission.csv"), reference, reference[0])

        # The same output again in the DFDC form: every video comes from the TMC run's journal.
        proc, dfdc_s = docker_run(args.image, inp, tmc_out, *tmc_args, "--format", "dfdc")
        compare("DFDC form", read_csv(tmc_out / "submission.csv"), reference, ["filename", "label"])
        resumed = f"{len(videos)} of {len(videos)} videos already scored, 0 to go"
        check(resumed in proc.stderr, f"the DFDC run did not resume from the journal:\n{proc.stderr}")

        # A run that fails every video itself (here: a time-out no video can meet) still writes
        # the CSV, but exits 5 so that a host does not score the fallbacks as an answer.
        broken_out = writable_folder(work / "all_failed")
        proc, _ = docker_run(args.image, inp, broken_out, *tmc_args, "--video-timeout", "0.01", expect=5)
        rows = read_csv(broken_out / "submission.csv")
        check(
            [r[0] for r in rows[1:]] == videos and {r[1] for r in rows[1:]} == {"0.500000"},
            f"the run whose every video timed out wrote {rows}",
        )
        check("every video failed" in proc.stderr, f"exit 5 without its message:\n{proc.stderr}")
    except (CheckFailed, subprocess.TimeoutExpired) as exc:
        print(f"docker-test FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"work folder: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"docker-test passed: image {args.image} {size / 1e6:.0f} MB (installs requirements.txt only), "
        f"build {build_s:.0f} s; "
        f"{len(videos)} videos ({BROKEN} broken): run.sh {host_s:.0f} s, image default command "
        f"{default_s:.0f} s, TMC form {tmc_s:.0f} s, DFDC form from the journal {dfdc_s:.0f} s; "
        f"CSVs equal to run.sh's within {TOLERANCE:g}; {pinned} lock pins equal to this venv's; "
        f"image runs as {user}, with {' '.join(LOCKED_DOWN)}; every video timed out: exit 5, CSV written"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
