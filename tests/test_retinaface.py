"""RetinaFace: network, weight conversion/loading, priors/decode/NMS and the FaceDetector.

Parity: the converted TF graph + our decode/NMS reproduces the original TensorFlow graph's
detections (tests/fixtures/retinaface_tf_expected.json, made by make_retinaface_fixture.py) on
real frames decoded here with PyAV.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from core.preprocess_config import DetectorConfig
from models.retinaface import build_retinaface, fuse_batchnorm, load_retinaface
from models.retinaface_config import PriorSpec
from preprocess.faces.detector import FaceDetector
from preprocess.faces.priors import (
    PriorBoxes,
    batched_nms,
    box_iou,
    decode_boxes,
    decode_landmarks,
)
from tests.conftest import SHARED, shared_media
from weights.store import WeightsError

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "retinaface_tf_expected.json").read_text())
BIUBUG6_MNET = SHARED / "weights" / "mobilenet0.25_Final.pth"
# Parity runs at the fixture's own input size: no resize, every TF detection (score > 0.5) kept.
EXACT = DetectorConfig(max_side=0, score_threshold=0.5, nms_threshold=0.4, min_face=0, batch_size=8)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """On the shared 2-core box, OpenMP threads spin-waiting for a busy core cost more CPU than
    they save (a 64x96 forward: 0.02 s with one thread, ~3 s with two under load)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def decode_frame(path: Path, index: int, downscale: int = 1) -> np.ndarray:
    """Same recipe as make_retinaface_fixture.decode_frame (decode order, integer block mean)."""
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                rgb = frame.to_ndarray(format="rgb24")
                break
    if downscale > 1:
        h, w = rgb.shape[0] // downscale * downscale, rgb.shape[1] // downscale * downscale
        blocks = rgb[:h, :w].reshape(h // downscale, downscale, w // downscale, downscale, 3)
        rgb = np.rint(blocks.mean(axis=(1, 3))).astype(np.uint8)
    return rgb


def iou(a, b) -> float:
    return float(box_iou(np.asarray(a, np.float32)[None], np.asarray(b, np.float32)[None])[0, 0])


@pytest.fixture(scope="module")
def tf_weights(tmp_path_factory) -> Path:
    """The default weights, converted from the retinaface package's graph into a temp folder."""
    from models.build_retinaface import build, find_graph

    try:
        graph = find_graph()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    path, built = build(graph, tmp_path_factory.mktemp("weights"))
    assert built
    return path


@pytest.fixture(scope="module")
def tf_detector(tf_weights) -> FaceDetector:
    return FaceDetector.from_weights(str(tf_weights), EXACT)


@pytest.fixture(scope="module")
def fixture_frames() -> list[tuple[dict, np.ndarray]]:
    frames = []
    for spec in FIXTURE["frames"]:
        rgb = decode_frame(shared_media(spec["file"]), spec["frame"], spec["downscale"])
        assert hashlib.sha256(rgb.tobytes()).hexdigest() == spec["rgb_sha256"], (
            f"{spec['file']} frame {spec['frame']} decodes differently from the fixture's PyAV {FIXTURE['source']['av']}"
        )
        frames.append((spec, rgb))
    return frames


# --- priors, decoding, NMS -----------------------------------------------------------------------


def test_priors_layout_and_cache():
    spec = PriorSpec()
    priors = PriorBoxes(spec)
    p = priors(64, 96)
    # level 0: 8x12 cells x 2 sizes, then 4x6 x 2, then 2x3 x 2; order row, column, size
    assert p.shape == (2 * (8 * 12 + 4 * 6 + 2 * 3), 4) == (priors.count(64, 96), 4)
    assert p.dtype == np.float32
    np.testing.assert_allclose(p[0], [4 / 96, 4 / 64, 16 / 96, 16 / 64], rtol=1e-6)
    np.testing.assert_allclose(p[1], [4 / 96, 4 / 64, 32 / 96, 32 / 64], rtol=1e-6)
    np.testing.assert_allclose(p[2], [12 / 96, 4 / 64, 16 / 96, 16 / 64], rtol=1e-6)
    np.testing.assert_allclose(p[2 * 12], [4 / 96, 12 / 64, 16 / 96, 16 / 64], rtol=1e-6)
    np.testing.assert_allclose(p[2 * 8 * 12], [8 / 96, 8 / 64, 64 / 96, 64 / 64], rtol=1e-6)
    assert priors(64, 96) is p  # cached on the object …
    assert PriorBoxes(spec)(64, 96) is not p  # … not globally
    assert priors(64, 128) is not p
    assert bool((PriorBoxes(PriorSpec(clip=True))(64, 96) <= 1).all()) and bool((p > 1).any())


def test_decode_inverts_the_encoding():
    priors = PriorBoxes(PriorSpec())(32, 32)
    var = (0.1, 0.2)
    boxes = decode_boxes(np.zeros((len(priors), 4), np.float32), priors, var)
    np.testing.assert_allclose((boxes[:, :2] + boxes[:, 2:]) / 2, priors[:, :2], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(boxes[:, 2:] - boxes[:, :2], priors[:, 2:], rtol=1e-6, atol=1e-7)
    # a box shifted by half the anchor width and twice as tall
    deltas = np.array([[0.5 / var[0], 0.0, 0.0, float(np.log(2.0)) / var[1]]], np.float32)
    box = decode_boxes(deltas, priors[:1], var)[0]
    cx, cy, w, h = priors[0].tolist()
    np.testing.assert_allclose(box, [cx, cy - h, cx + w, cy + h], rtol=1e-6)
    points = decode_landmarks(np.arange(10.0, dtype=np.float32)[None], priors[:1], var)[0]
    assert points.shape == (5, 2)
    np.testing.assert_allclose(points[2], [cx + 4 * 0.1 * w, cy + 5 * 0.1 * h], rtol=1e-6)


def greedy_nms_reference(boxes: np.ndarray, scores: np.ndarray, thr: float) -> list[int]:
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        order = [j for j in order if iou(boxes[i], boxes[j]) <= thr]
    return keep


def test_batched_nms_equals_greedy_reference():
    rng = np.random.default_rng(0)
    for trial in range(5):
        n = 60
        xy = rng.uniform(0, 80, (n, 2))
        wh = rng.uniform(5, 40, (n, 2))
        boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        scores = rng.uniform(0, 1, n).astype(np.float32)
        groups = rng.integers(0, 3, n)
        keep = batched_nms(boxes, scores, groups, 0.4)
        for g in range(3):
            idx = np.flatnonzero(groups == g)
            expected = idx[greedy_nms_reference(boxes[idx], scores[idx], 0.4)]
            got = [int(k) for k in keep if groups[k] == g]
            assert got == expected.tolist(), f"trial {trial} group {g}"
        assert np.all(np.diff(scores[keep]) <= 0)  # best first
    assert (
        batched_nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), 0.4).size
        == 0
    )


# --- network -------------------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", ["mobilenetv2", "mobilenet0.25", "resnet50"])
def test_network_shapes_traceable_and_fusable(backbone):
    torch.manual_seed(0)
    net = build_retinaface(backbone).eval()
    for m in net.modules():  # non-trivial BatchNorm statistics, so folding them is really tested
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    n = PriorBoxes(PriorSpec()).count(64, 96)
    with torch.inference_mode():
        boxes, scores, landmarks = net(torch.randn(2, 3, 64, 96))
        assert boxes.shape == (2, n, 4) and scores.shape == (2, n) and landmarks.shape == (2, n, 10)
        assert bool(((scores >= 0) & (scores <= 1)).all())
        # traced at one size, run at another: no shape is frozen into the graph (ONNX-friendly)
        traced = torch.jit.trace(net, torch.randn(1, 3, 32, 32))
        x = torch.randn(1, 3, 64, 96)
        reference = net(x)
        for a, b in zip(traced(x), reference, strict=True):
            torch.testing.assert_close(a, b)
        fused = fuse_batchnorm(net)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
        for a, b in zip(fused(x), reference, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.filterwarnings("ignore::UserWarning")  # exporter chatter about constant folding
def test_onnx_export_runs_at_other_sizes(tmp_path):
    """The model's own export description leaves batch and frame size free."""
    from models.onnx_export import export_onnx

    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    net = fuse_batchnorm(build_retinaface("mobilenetv2").eval())
    path = export_onnx(net, tmp_path / "retinaface.onnx", net.onnx_spec(batch=1, height=64, width=64))
    x = torch.randn(2, 3, 96, 160)
    with torch.inference_mode():
        expected = net(x)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b.numpy(), atol=1e-4, rtol=1e-4)


def test_tf_converter_refuses_incomplete_graphs():
    from models.build_retinaface import find_graph
    from models.checkpoints import ConversionError
    from models.retinaface_tf import TFGraph, read_graph, retinaface_from_tf_graph

    try:
        graph = read_graph(find_graph())
    except FileNotFoundError as e:
        pytest.skip(str(e))
    prefix = "RetinaFaceModel/"
    for dropped, problem in (
        (prefix + "MobileNetV2_extrator/Conv1/Conv2D", "no MobileNetV2 RetinaFace"),
        (prefix + "SSH_1/ConvBN_3/conv/Conv2D", "SSH_1/ConvBN_3/conv/Conv2D' is missing"),
        (prefix + "ClassHead_2/conv2d_8/Conv2D", "ClassHead_2: expected one Conv2D, found 0"),
        (prefix + "FPN/ConvBN_4/bn/FusedBatchNormV3", "expected one FusedBatchNormV3 consumer, found 0"),
    ):
        partial = TFGraph([n for n in graph.nodes if n.name != dropped], "partial.pb")
        with pytest.raises(ConversionError, match=problem):
            retinaface_from_tf_graph(partial)


# --- the converted TF graph reproduces TensorFlow ------------------------------------------------


@pytest.mark.shared
def test_tf_conversion_matches_tensorflow(tf_detector, tf_weights, fixture_frames):
    config = tf_detector.config
    assert config.backbone == "mobilenetv2" and config.input.channel_order == "rgb"
    for frame_spec, rgb in fixture_frames:
        name = frame_spec["file"]
        size = tf_detector.input_size(*rgb.shape[:2])
        assert list(size[2:]) == frame_spec["padded"], name
        # raw outputs of selected anchors (best ones and evenly spaced background ones)
        deltas, scores, _ = map(torch.from_numpy, tf_detector.network(tf_detector.prepare(rgb[None], size)))
        anchors = frame_spec["anchors"]
        assert scores.shape[1] == anchors["count"], name
        idx = torch.tensor(anchors["index"])
        torch.testing.assert_close(
            scores[0, idx], torch.tensor(anchors["score"]), atol=2e-5, rtol=0, msg=name
        )
        torch.testing.assert_close(
            deltas[0, idx], torch.tensor(anchors["box_delta"]), atol=1e-3, rtol=0, msg=name
        )
        # decoded, NMS'd detections
        found = tf_detector.detect(rgb[None])[0]
        expected = frame_spec["faces"]
        assert len(found) == len(expected), name
        for face, box, points, score in zip(
            expected, found.boxes, found.landmarks, found.scores, strict=True
        ):
            np.testing.assert_allclose(box, face["box"], atol=1.0, err_msg=name)
            np.testing.assert_allclose(points, face["landmarks"], atol=1.0, err_msg=name)
            assert abs(float(score) - face["score"]) < 1e-3, name
            assert found.boxes.dtype == np.float32 and found.landmarks.shape[1:] == (5, 2)


@pytest.mark.shared
def test_batches_resizing_and_thresholds(tf_weights, fixture_frames):
    by_file = {spec["file"]: (spec, rgb) for spec, rgb in fixture_frames}
    # 3 GRID frames with batch_size 2 (a full and a partial batch) == one frame at a time
    clip = shared_media("real/lipnet_GRID_bbaf2n.mpg")
    frames = np.stack([decode_frame(clip, i) for i in (0, 10, 40)])
    detector = FaceDetector.from_weights(
        str(tf_weights), DetectorConfig(batch_size=2, min_face=0, max_side=640)
    )
    together = detector.detect(frames)
    assert len(together) == 3
    for frame, dets in zip(frames, together, strict=True):
        alone = detector.detect(frame[None])[0]
        assert len(dets) == len(alone) == 1
        np.testing.assert_allclose(dets.boxes, alone.boxes, atol=1e-3)
    grid_box = by_file["real/lipnet_GRID_bbaf2n.mpg"][0]["faces"][0]["box"]
    np.testing.assert_allclose(together[1].boxes[0], grid_box, atol=1)

    # thresholds: min_face is in frame pixels (shorter box side); score threshold
    side = float(min(grid_box[2] - grid_box[0], grid_box[3] - grid_box[1]))
    for cfg, count in (
        (DetectorConfig(min_face=int(side) - 3), 1),
        (DetectorConfig(min_face=int(side) + 3), 0),
        (DetectorConfig(score_threshold=1.01), 0),
    ):
        assert len(FaceDetector(detector.network, detector.config, cfg).detect(frames[1:2])[0]) == count, cfg

    # a 1080p frame detected at 640 long side lands on the fixture box (found at 1/3 scale) x 3
    spec = by_file["real/dfdc_REAL_lynaeydofd.mp4"][0]
    full = decode_frame(shared_media(spec["file"]), spec["frame"])
    assert full.shape[:2] == (1080, 1920) and detector.input_size(1080, 1920) == (360, 640, 384, 640)
    dets = detector.detect(full[None])[0]
    assert len(dets) == 1
    assert iou(dets.boxes[0], np.array(spec["faces"][0]["box"]) * 3) > 0.9
    np.testing.assert_allclose(dets.landmarks[0], np.array(spec["faces"][0]["landmarks"]) * 3, atol=6)


def test_detect_rejects_bad_input(tf_detector):
    with pytest.raises(ValueError, match=r"uint8 RGB frames shaped \(B, H, W, 3\)"):
        tf_detector.detect(np.zeros((2, 64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        tf_detector.detect(np.zeros((64, 64, 3), np.uint8))
    assert tf_detector.detect(np.zeros((0, 64, 64, 3), np.uint8)) == []
    blank = tf_detector.detect(np.full((1, 100, 150, 3), 128, np.uint8))[0]
    assert len(blank) == 0 and blank.boxes.shape == (0, 4) and blank.landmarks.shape == (0, 5, 2)


# --- biubug6 checkpoints --------------------------------------------------------------------------


@pytest.mark.shared
def test_biubug6_mobilenet025_agrees_with_tf_detector(fixture_frames, tf_detector):
    if not BIUBUG6_MNET.is_file():
        shared_media()  # skips only when ../shared is absent
        pytest.fail(f"{BIUBUG6_MNET} missing from ../shared")
    mnet = FaceDetector.from_weights(str(BIUBUG6_MNET), DetectorConfig(max_side=0, min_face=0))
    assert mnet.config.backbone == "mobilenet0.25" and mnet.config.input.channel_order == "bgr"
    used = 0
    for spec, rgb in fixture_frames:
        if max(rgb.shape) > 400 and len(spec["faces"]) < 2:
            continue  # keeps the test fast: GRID, PC-AVS and the two-person frame
        used += 1
        ours, theirs = mnet.detect(rgb[None])[0], tf_detector.detect(rgb[None])[0]
        assert len(ours) == len(theirs) == len(spec["faces"]), spec["file"]
        for box in theirs.boxes:  # every face of the TF detector has a match
            assert max(iou(box, b) for b in ours.boxes) > 0.7, spec["file"]
        for box, points in zip(ours.boxes, ours.landmarks, strict=True):  # eyes above mouth, inside the box
            assert points[:2, 1].max() < points[3:, 1].min()
            assert (points[:, 0] > box[0]).all() and (points[:, 0] < box[2]).all()
    assert used == 3


def biubug6_resnet50_layout() -> dict[str, tuple[int, ...]]:
    """Key → shape of biubug6's Resnet50_Final.pth, spelled out from its model definition
    (torchvision resnet50 body via IntermediateLayerGetter, FPN/SSH with 256 channels, 2 anchors)."""
    layout: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{prefix}.{name}"] = (c,)
        layout[f"{prefix}.num_batches_tracked"] = ()

    layout["body.conv1.weight"] = (64, 3, 7, 7)
    bn("body.bn1", 64)
    cin = 64
    for layer, (width, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3)), 1):
        for b in range(blocks):
            p = f"body.layer{layer}.{b}"
            layout[f"{p}.conv1.weight"] = (width, cin, 1, 1)
            layout[f"{p}.conv2.weight"] = (width, width, 3, 3)
            layout[f"{p}.conv3.weight"] = (width * 4, width, 1, 1)
            for i, c in ((1, width), (2, width), (3, width * 4)):
                bn(f"{p}.bn{i}", c)
            if b == 0:
                layout[f"{p}.downsample.0.weight"] = (width * 4, cin, 1, 1)
                bn(f"{p}.downsample.1", width * 4)
            cin = width * 4
    for i, c in ((1, 512), (2, 1024), (3, 2048)):
        layout[f"fpn.output{i}.0.weight"] = (256, c, 1, 1)
        bn(f"fpn.output{i}.1", 256)
    for i in (1, 2):
        layout[f"fpn.merge{i}.0.weight"] = (256, 256, 3, 3)
        bn(f"fpn.merge{i}.1", 256)
    for s in (1, 2, 3):
        for name, cin_, cout in (
            ("conv3X3", 256, 128),
            ("conv5X5_1", 256, 64),
            ("conv5X5_2", 64, 64),
            ("conv7X7_2", 64, 64),
            ("conv7x7_3", 64, 64),
        ):
            layout[f"ssh{s}.{name}.0.weight"] = (cout, cin_, 3, 3)
            bn(f"ssh{s}.{name}.1", cout)
    for head, per in (("ClassHead", 2), ("BboxHead", 4), ("LandmarkHead", 10)):
        for level in range(3):
            layout[f"{head}.{level}.conv1x1.weight"] = (2 * per, 256, 1, 1)
            layout[f"{head}.{level}.conv1x1.bias"] = (2 * per,)
    return layout


def random_state_dict(layout: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(0)
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=g) + 0.5
        else:
            out[key] = torch.randn(shape, generator=g) * 0.05
    return out


@pytest.mark.parametrize("prefix", ["", "module."])
def test_biubug6_resnet50_layout_loads(tmp_path, prefix):
    state = random_state_dict(biubug6_resnet50_layout())
    path = tmp_path / "Resnet50_Final.pth"
    torch.save({prefix + k: v for k, v in state.items()}, path)
    net = load_retinaface(path)
    assert net.config.backbone == "resnet50" and net.config.input.mean == (104.0, 117.0, 123.0)
    loaded = net.state_dict()
    for key in ("body.layer3.5.conv2.weight", "fpn.output3.0.weight", "ssh2.conv7x7_3.1.running_var"):
        torch.testing.assert_close(loaded[key], state[key])
    detector = FaceDetector.from_weights(str(path), DetectorConfig(score_threshold=0.0, min_face=0))
    dets = detector.detect(np.random.default_rng(0).integers(0, 255, (1, 40, 50, 3), dtype=np.uint8))
    assert len(dets) == 1 and dets[0].boxes.shape[1] == 4  # random weights: only the plumbing is checked


def test_bad_checkpoints_name_file_and_problem(tmp_path, tf_weights):
    state = random_state_dict(biubug6_resnet50_layout())
    cases = {}
    truncated = tmp_path / "truncated.pth"
    torch.save(state, truncated)
    truncated.write_bytes(truncated.read_bytes()[:5000])
    cases[truncated] = "not a readable torch checkpoint"
    other = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, other)
    cases[other] = "not a biubug6 RetinaFace checkpoint"
    wrong = tmp_path / "wrong_shape.pth"
    torch.save({**state, "fpn.output1.0.weight": torch.zeros(256, 100, 1, 1)}, wrong)
    cases[wrong] = r"shape mismatches: fpn.output1.0.weight \(256, 100, 1, 1\)"
    missing = tmp_path / "missing_keys.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("ssh3")}, missing)
    cases[missing] = "missing keys: ssh3"
    notdict = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), notdict)
    cases[notdict] = "not a state dict"
    cases[tmp_path / "absent.pth"] = "not found"
    cases[tmp_path / "absent_name"] = "not found .*python -m models.build_retinaface"
    for path, problem in cases.items():
        with pytest.raises(WeightsError, match=problem) as err:
            FaceDetector.from_weights(str(path), DetectorConfig())
        assert str(path) in str(err.value)

    # our own format: a tampered tensor file is caught by its checksum
    stem = tmp_path / "copy"
    for suffix in (".safetensors", ".json"):
        stem.with_suffix(suffix).write_bytes(tf_weights.with_suffix(suffix).read_bytes())
    data = bytearray(stem.with_suffix(".safetensors").read_bytes())
    data[-10] ^= 0xFF
    stem.with_suffix(".safetensors").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        FaceDetector.from_weights(str(stem.with_suffix(".safetensors")), DetectorConfig())


def test_build_retinaface_is_idempotent(tmp_path):
    from models.build_retinaface import build, find_graph
    from weights.store import read_config

    try:
        graph = find_graph()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    path, built = build(graph, tmp_path)
    assert built and path.name == "retinaface_mobilenetv2.safetensors"
    config = read_config(path)
    assert config["arch"] == "retinaface" and config["model"]["backbone"] == "mobilenetv2"
    assert config["model"]["input"] == {
        "channel_order": "rgb",
        "mean": [127.5] * 3,
        "std": [127.5] * 3,
        "pad_multiple": 32,
    }
    assert config["extra"]["source"]["sha256"] == FIXTURE["source"]["graph_sha256"]
    stamp = path.stat().st_mtime_ns
    assert build(graph, tmp_path) == (path, False) and path.stat().st_mtime_ns == stamp
    path.write_bytes(path.read_bytes()[:-100])  # damaged → rebuilt
    assert build(graph, tmp_path) == (path, True)
    assert build(graph, tmp_path)[1] is False
