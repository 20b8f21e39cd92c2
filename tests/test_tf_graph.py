"""weights.tf_graph: a GraphDef reader without TensorFlow.

Synthetic graphs are encoded here field by field (protobuf wire format) so every attribute kind
is exercised; the real graph of the ``retinaface`` package is checked against what TensorFlow's
own parser reported (tests/fixtures/retinaface_tf_expected.json, see make_retinaface_fixture.py).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from weights.tf_graph import DataType, GraphParseError, TensorShape, parse_graph, read_graph

FIXTURE = Path(__file__).parent / "fixtures" / "retinaface_tf_expected.json"


# --- a minimal protobuf encoder (the inverse of what is under test) -----------------------------


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative ints travel as 10-byte two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_varint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def field_bytes(number: int, data: bytes | str) -> bytes:
    data = data.encode() if isinstance(data, str) else data
    return varint(number << 3 | 2) + varint(len(data)) + data


def field_f32(number: int, value: float) -> bytes:
    return varint(number << 3 | 5) + struct.pack("<f", value)


def shape(*dims: int) -> bytes:
    return b"".join(field_bytes(2, field_varint(1, d)) for d in dims)


def tensor(dtype: int, dims: tuple[int, ...], content: bytes = b"", extra: bytes = b"") -> bytes:
    msg = field_varint(1, dtype) + field_bytes(2, shape(*dims))
    if content:
        msg += field_bytes(4, content)
    return msg + extra


def node(name: str, op: str, inputs=(), attrs: dict[str, bytes] | None = None, extra: bytes = b"") -> bytes:
    msg = field_bytes(1, name) + field_bytes(2, op)
    msg += b"".join(field_bytes(3, i) for i in inputs)
    for key, attr in (attrs or {}).items():
        msg += field_bytes(5, field_bytes(1, key) + field_bytes(2, attr))
    return msg + extra


def graph(*nodes: bytes) -> bytes:
    # versions (field 4) precede nothing in particular; the reader must skip it
    return field_bytes(4, field_varint(1, 1234)) + b"".join(field_bytes(1, n) for n in nodes)


@pytest.fixture(scope="module")
def synthetic() -> bytes:
    kernel = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4) - 5
    packed_ints = field_bytes(7, b"".join(varint(v) for v in (7,)))  # one value fills the shape
    int64s = field_bytes(10, b"".join(varint(v) for v in (-3, 2**40)))
    floats = field_bytes(5, struct.pack("<3f", 0.5, -1.25, 2.0))
    strides = field_bytes(1, field_bytes(3, b"".join(varint(v) for v in (1, 2, 2, 1))))
    return graph(
        node(
            "x",
            "Placeholder",
            attrs={"dtype": field_varint(6, 1), "shape": field_bytes(7, shape(-1, -1, -1, 3))},
        ),
        node("w", "Const", attrs={"value": field_bytes(8, tensor(1, (1, 2, 3, 4), kernel.tobytes()))}),
        node("w/read", "Identity", ["w"]),
        node("w/read2", "Identity", ["w/read:0"]),
        node("sevens", "Const", attrs={"value": field_bytes(8, tensor(3, (3,), extra=packed_ints))}),
        node("big", "Const", attrs={"value": field_bytes(8, tensor(9, (2,), extra=int64s))}),
        node("f", "Const", attrs={"value": field_bytes(8, tensor(1, (3,), extra=floats))}),
        node("zeros", "Const", attrs={"value": field_bytes(8, tensor(1, (2, 2)))}),
        node(
            "conv",
            "Conv2D",
            ["x:0", "w/read2", "^sevens"],
            attrs={
                "strides": strides,
                "padding": field_bytes(2, "SAME"),
                "data_format": field_bytes(2, "NHWC"),
                "dilations": field_bytes(1, field_bytes(3, b"\x01\x01\x01\x01")),
                "use_cudnn_on_gpu": field_varint(5, 1),
                "T": field_varint(6, 1),
            },
            extra=field_bytes(99, b"an unknown field to skip") + field_bytes(4, "/device:CPU:0"),
        ),
        node(
            "bn",
            "FusedBatchNormV3",
            ["conv", "f", "f", "f", "f"],
            attrs={
                "epsilon": field_f32(4, 0.001),
                "is_training": field_varint(5, 0),
                "k": field_varint(3, -2),
            },
        ),
    )


def test_nodes_ops_inputs(synthetic):
    g = parse_graph(synthetic, "synthetic.pb")
    assert [n.name for n in g.nodes] == [
        "x",
        "w",
        "w/read",
        "w/read2",
        "sevens",
        "big",
        "f",
        "zeros",
        "conv",
        "bn",
    ]
    conv = g["conv"]
    assert conv.op == "Conv2D"
    assert conv.inputs == ["x:0", "w/read2", "^sevens"]
    assert conv.data_inputs == ["x", "w/read2"]
    assert conv.device == "/device:CPU:0"
    assert g.ops() == {"Placeholder": 1, "Const": 5, "Identity": 2, "Conv2D": 1, "FusedBatchNormV3": 1}
    assert [n.name for n in g.consumers("conv")] == ["bn"]
    assert "conv:0" in g and "nope" not in g


def test_attr_kinds(synthetic):
    g = parse_graph(synthetic)
    conv, bn, x = g["conv"], g["bn"], g["x"]
    assert conv.attrs["strides"] == [1, 2, 2, 1]
    assert conv.attrs["dilations"] == [1, 1, 1, 1]
    assert conv.attr_str("padding") == "SAME" and conv.attr_str("data_format") == "NHWC"
    assert conv.attrs["use_cudnn_on_gpu"] is True
    assert conv.attrs["T"] == DataType(1) and conv.attrs["T"].numpy == np.float32
    assert bn.attrs["epsilon"] == pytest.approx(0.001)
    assert bn.attrs["is_training"] is False
    assert bn.attrs["k"] == -2
    assert x.attrs["shape"] == TensorShape((-1, -1, -1, 3))


def test_constants(synthetic):
    g = parse_graph(synthetic)
    kernel = g.const("w/read2")  # resolved through two Identity nodes
    assert kernel.dtype == np.float32 and kernel.shape == (1, 2, 3, 4)
    np.testing.assert_array_equal(kernel, np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4) - 5)
    np.testing.assert_array_equal(g.const("sevens"), np.array([7, 7, 7], np.int32))
    np.testing.assert_array_equal(g.const("big"), np.array([-3, 2**40], np.int64))
    np.testing.assert_array_equal(g.const("f"), np.array([0.5, -1.25, 2.0], np.float32))
    np.testing.assert_array_equal(g.const("zeros"), np.zeros((2, 2), np.float32))
    with pytest.raises(GraphParseError, match="Conv2D node, not a constant"):
        g.const("conv")


@pytest.mark.parametrize(
    "mutate, problem",
    [
        (lambda b: b[:-3], "truncated"),
        (lambda b: b + b"\x0b", "wire type 3"),
        (lambda b: b"\xff" * 12, "varint longer than 10 bytes"),
        (lambda b: field_bytes(2, b"library only"), "no nodes"),
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
    from weights.build_default import find_graph

    try:
        path = find_graph()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    expected = json.loads(FIXTURE.read_text())["graph"]
    g = read_graph(path)
    assert len(g) == expected["num_nodes"]
    assert dict(sorted(g.ops().items())) == expected["ops"]
    for name, facts in expected["consts"].items():
        value = g.const(name)
        assert list(value.shape) == facts["shape"], name
        assert float(value.astype(np.float64).sum()) == pytest.approx(facts["sum"], rel=1e-9, abs=1e-9), name
        np.testing.assert_array_equal(value.ravel()[:4], np.array(facts["first"], value.dtype), err_msg=name)
    conv = g["RetinaFaceModel/MobileNetV2_extrator/block_1_depthwise/depthwise"]
    assert conv.op == "DepthwiseConv2dNative" and conv.attr_str("padding") == "VALID"
    assert conv.attrs["strides"] == [1, 2, 2, 1]
    pad = g["RetinaFaceModel/MobileNetV2_extrator/block_1_pad/Pad"]
    np.testing.assert_array_equal(g.const(pad.data_inputs[1]), [[0, 0], [0, 1], [0, 1], [0, 0]])
