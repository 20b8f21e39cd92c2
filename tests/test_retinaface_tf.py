"""models.retinaface_tf: reading a frozen TensorFlow graph without TensorFlow (tensorboard's
GraphDef protos), and the parity of what it reads with what TensorFlow's own parser reported on
the ``retinaface`` package's graph (tests/fixtures/retinaface_tf_expected.json, see
make_retinaface_fixture.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tensorboard.compat.proto.graph_pb2 import GraphDef
from tensorboard.util.tensor_util import make_tensor_proto

from models.retinaface_tf import GraphParseError, data_inputs, parse_graph, read_graph

FIXTURE = Path(__file__).parent / "fixtures" / "retinaface_tf_expected.json"


def _const(graph: GraphDef, name: str, value: np.ndarray) -> None:
    node = graph.node.add(name=name, op="Const")
    node.attr["value"].tensor.CopyFrom(make_tensor_proto(value))


@pytest.fixture(scope="module")
def synthetic() -> bytes:
    graph = GraphDef()
    graph.node.add(name="x", op="Placeholder")
    _const(graph, "w", np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4) - 5)
    graph.node.add(name="w/read", op="Identity", input=["w"])
    graph.node.add(name="w/read2", op="Identity", input=["w/read:0"])
    _const(graph, "big", np.array([-3, 2**40], np.int64))
    conv = graph.node.add(name="conv", op="Conv2D", input=["x:0", "w/read2", "^big"])
    conv.attr["padding"].s = b"SAME"
    conv.attr["strides"].list.i.extend([1, 2, 2, 1])
    graph.node.add(name="loop", op="Identity", input=["loop"])
    return graph.SerializeToString()


def test_nodes_inputs_and_constants(synthetic):
    g = parse_graph(synthetic, "synthetic.pb")
    assert len(g) == 7 and [n.name for n in g.nodes][:3] == ["x", "w", "w/read"]
    assert g.ops() == {"Placeholder": 1, "Const": 2, "Identity": 3, "Conv2D": 1}
    conv = g["conv:0"]
    assert list(conv.input) == ["x:0", "w/read2", "^big"]
    assert data_inputs(conv) == ["x", "w/read2"]  # ports and control inputs dropped
    assert conv.attr["padding"].s == b"SAME" and list(conv.attr["strides"].list.i) == [1, 2, 2, 1]
    assert "conv" in g and "nope" not in g
    kernel = g.const("w/read2")  # through two Identity nodes
    np.testing.assert_array_equal(kernel, np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4) - 5)
    np.testing.assert_array_equal(g.const("big"), np.array([-3, 2**40], np.int64))
    with pytest.raises(GraphParseError, match="Conv2D node, not a constant"):
        g.const("conv")
    with pytest.raises(GraphParseError, match="Identity cycle"):
        g.const("loop")
    with pytest.raises(KeyError, match="no node named 'absent'"):
        g["absent"]


@pytest.mark.parametrize(
    "mutate, problem",
    [
        (lambda b: b[:-3], "not a readable TensorFlow GraphDef"),
        (lambda b: b"\xff" * 12, "not a readable TensorFlow GraphDef"),
        (lambda b: b"", "no nodes"),
    ],
)
def test_corrupt_bytes_name_the_file(synthetic, mutate, problem):
    with pytest.raises(GraphParseError, match=problem) as err:
        parse_graph(mutate(synthetic), "broken.pb")
    assert str(err.value).startswith("broken.pb: ")


def test_unreadable_and_wrong_files(tmp_path):
    with pytest.raises(GraphParseError, match="missing.pb: cannot read"):
        read_graph(tmp_path / "missing.pb")
    text = tmp_path / "notes.pb"
    text.write_text("this is not a protobuf file at all\n" * 4)
    with pytest.raises(GraphParseError, match="notes.pb: not a"):
        read_graph(text)


def test_real_graph_matches_tensorflow_parser():
    from models.build_retinaface import find_graph

    try:
        path = find_graph()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    expected = json.loads(FIXTURE.read_text())["graph"]
    g = read_graph(path)
    assert len(g) == expected["num_nodes"] == 1746
    assert dict(sorted(g.ops().items())) == expected["ops"]
    for name, facts in expected["consts"].items():
        value = g.const(name)
        assert list(value.shape) == facts["shape"], name
        assert float(value.astype(np.float64).sum()) == pytest.approx(facts["sum"], rel=1e-9, abs=1e-9), name
        np.testing.assert_array_equal(value.ravel()[:4], np.array(facts["first"], value.dtype), err_msg=name)
    values = sum(g.const(n.name).size for n in g.nodes if n.op == "Const")
    assert (sum(n.op == "Const" for n in g.nodes), values) == (823, 1_570_005)
    conv = g["RetinaFaceModel/MobileNetV2_extrator/block_1_depthwise/depthwise"]
    assert conv.op == "DepthwiseConv2dNative" and conv.attr["padding"].s == b"VALID"
    assert list(conv.attr["strides"].list.i) == [1, 2, 2, 1]
    pad = g["RetinaFaceModel/MobileNetV2_extrator/block_1_pad/Pad"]
    np.testing.assert_array_equal(g.const(data_inputs(pad)[1]), [[0, 0], [0, 1], [0, 1], [0, 0]])
