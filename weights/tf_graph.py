"""Read a frozen TensorFlow ``GraphDef`` (``.pb``) without TensorFlow.

A minimal decoder of the protobuf wire format, covering the messages a frozen inference
graph needs: ``GraphDef.node`` → ``NodeDef`` (name, op, inputs, device, attrs) → ``AttrValue``
(strings, ints, floats, bools, dtypes, shapes, lists and ``TensorProto`` constants). Function
libraries, versions and unknown fields are skipped, as protobuf itself does.

Field numbers follow tensorflow/core/framework/{graph,node_def,attr_value,tensor,
tensor_shape,types}.proto.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class GraphParseError(ValueError):
    """A ``.pb`` file that is not a readable GraphDef; the message names the file and the problem."""


# DataType enum → numpy dtype (only the types constants can carry in a frozen graph).
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}
DT_STRING = 7
DT_BFLOAT16 = 14

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


@dataclass(frozen=True)
class TensorShape:
    dims: tuple[int, ...] | None  # None: unknown rank; -1 marks an unknown dimension


@dataclass(frozen=True)
class DataType:
    """An ``AttrValue.type`` (e.g. the ``T`` or ``dtype`` attribute of a node)."""

    value: int

    @property
    def numpy(self) -> np.dtype | None:
        return DTYPES.get(self.value)


@dataclass
class NodeDef:
    name: str
    op: str
    inputs: list[str] = field(default_factory=list)  # "node", "node:1" or "^node" (control)
    device: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)

    def attr_str(self, key: str, default: str | None = None) -> str | None:
        value = self.attrs.get(key)
        return value.decode() if isinstance(value, bytes) else default

    @property
    def data_inputs(self) -> list[str]:
        """Inputs that carry tensors, as node names (output index and control inputs dropped)."""
        return [strip_port(i) for i in self.inputs if not i.startswith("^")]


def strip_port(name: str) -> str:
    return name.lstrip("^").split(":")[0]


class _Reader:
    """Iterates (field number, wire type, value) over one message's bytes."""

    def __init__(self, data: memoryview, where: str):
        self.data = data
        self.where = where

    def _varint(self, pos: int) -> tuple[int, int]:
        result = shift = 0
        data = self.data
        while True:
            if pos >= len(data):
                raise GraphParseError(f"{self.where}: truncated varint")
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result, pos
            shift += 7
            if shift >= 70:
                raise GraphParseError(f"{self.where}: varint longer than 10 bytes")

    def fields(self) -> Iterator[tuple[int, int, Any]]:
        pos, end = 0, len(self.data)
        while pos < end:
            key, pos = self._varint(pos)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise GraphParseError(f"{self.where}: field number 0 at byte {pos}")
            if wire == _VARINT:
                value, pos = self._varint(pos)
            elif wire == _I64:
                value, pos = self.data[pos : pos + 8], pos + 8
            elif wire == _I32:
                value, pos = self.data[pos : pos + 4], pos + 4
            elif wire == _LEN:
                size, pos = self._varint(pos)
                value, pos = self.data[pos : pos + size], pos + size
            else:
                raise GraphParseError(f"{self.where}: unsupported wire type {wire} (field {number})")
            if pos > end:
                raise GraphParseError(f"{self.where}: truncated field {number}")
            yield number, wire, value


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _packed(wire: int, value: Any, fmt: str) -> list:
    """A repeated scalar field: packed (one length-delimited run) or one element per field."""
    if wire == _LEN:
        if fmt in ("<f", "<d"):
            return list(np.frombuffer(value, dtype=fmt))
        reader = _Reader(value, "packed field")
        out, pos = [], 0
        while pos < len(value):
            item, pos = reader._varint(pos)
            out.append(item)
        return out
    if wire == _I32:
        return [struct.unpack("<f", value)[0]] if fmt == "<f" else [int.from_bytes(value, "little")]
    if wire == _I64:
        return [struct.unpack("<d", value)[0]] if fmt == "<d" else [int.from_bytes(value, "little")]
    return [value]


def parse_shape(data: memoryview) -> TensorShape:
    dims: list[int] = []
    unknown_rank = False
    for number, _, value in _Reader(data, "TensorShapeProto").fields():
        if number == 2:  # Dim
            size = 0
            for n, _, v in _Reader(value, "TensorShapeProto.Dim").fields():
                if n == 1:
                    size = _signed64(v)
            dims.append(size)
        elif number == 3:
            unknown_rank = bool(value)
    return TensorShape(None if unknown_rank else tuple(dims))


def parse_tensor(data: memoryview) -> np.ndarray:
    """A ``TensorProto`` → numpy array (raw ``tensor_content`` or typed ``*_val`` fields)."""
    dtype_id, shape, content = 0, TensorShape(()), None
    values: list = []
    strings: list[bytes] = []
    for number, wire, value in _Reader(data, "TensorProto").fields():
        if number == 1:
            dtype_id = value
        elif number == 2:
            shape = parse_shape(value)
        elif number == 4:
            content = bytes(value)
        elif number == 5:  # float_val
            values += _packed(wire, value, "<f")
        elif number == 6:  # double_val
            values += _packed(wire, value, "<d")
        elif number in (7, 11, 13, 16, 17):  # int_val, bool_val, half_val (bits), uint32/64_val
            values += _packed(wire, value, "v")
        elif number == 10:  # int64_val
            values += [_signed64(v) for v in _packed(wire, value, "v")]
        elif number == 8:
            strings.append(bytes(value))
    dims = shape.dims or ()
    if any(d < 0 for d in dims):
        raise GraphParseError(f"TensorProto: constant with unknown dimension {dims}")
    count = int(np.prod(dims)) if dims else 1
    if dtype_id == DT_STRING:
        return np.array(strings, dtype=object).reshape(dims) if strings else np.empty(dims, dtype=object)
    if dtype_id == DT_BFLOAT16:
        raise GraphParseError("TensorProto: bfloat16 constants are not supported")
    dtype = DTYPES.get(dtype_id)
    if dtype is None:
        raise GraphParseError(f"TensorProto: unsupported dtype enum {dtype_id}")
    if content is not None:
        if len(content) != count * dtype.itemsize:
            raise GraphParseError(
                f"TensorProto: tensor_content has {len(content)} bytes, shape {dims} needs {count * dtype.itemsize}"
            )
        return np.frombuffer(content, dtype=dtype).reshape(dims).copy()
    if dtype_id == 19:  # half values travel as their uint16 bit patterns in int fields
        arr = np.array(values, dtype=np.uint16).view(np.float16)
    else:
        # int32 values are varints of the sign-extended 64-bit number
        if dtype.kind == "i":
            values = [_signed64(v) if isinstance(v, int) else v for v in values]
        arr = np.array(values, dtype=dtype)
    if arr.size == count:
        return arr.reshape(dims)
    if arr.size == 0:
        return np.zeros(dims, dtype=dtype)
    if arr.size > count:
        raise GraphParseError(f"TensorProto: {arr.size} values for shape {dims}")
    # protobuf elides trailing repeats: the last value fills the rest
    return np.concatenate([arr, np.full(count - arr.size, arr[-1], dtype=arr.dtype)]).reshape(dims)


def _parse_list(data: memoryview) -> list:
    out: list = []
    for number, wire, value in _Reader(data, "AttrValue.ListValue").fields():
        if number == 2:
            out.append(bytes(value))
        elif number == 3:
            out += [_signed64(v) for v in _packed(wire, value, "v")]
        elif number == 4:
            out += [float(v) for v in _packed(wire, value, "<f")]
        elif number == 5:
            out += [bool(v) for v in _packed(wire, value, "v")]
        elif number == 6:
            out += [DataType(v) for v in _packed(wire, value, "v")]
        elif number == 7:
            out.append(parse_shape(value))
        elif number == 8:
            out.append(parse_tensor(value))
    return out


def parse_attr(data: memoryview) -> Any:
    """An ``AttrValue`` → bytes | int | float | bool | DataType | TensorShape | ndarray | list | str."""
    result: Any = None
    for number, wire, value in _Reader(data, "AttrValue").fields():
        if number == 1:
            result = _parse_list(value)
        elif number == 2:
            result = bytes(value)
        elif number == 3:
            result = _signed64(value)
        elif number == 4:
            result = struct.unpack("<f", value)[0] if wire == _I32 else float(value)
        elif number == 5:
            result = bool(value)
        elif number == 6:
            result = DataType(value)
        elif number == 7:
            result = parse_shape(value)
        elif number == 8:
            result = parse_tensor(value)
        elif number == 9:  # placeholder
            result = bytes(value).decode()
        elif number == 10:  # NameAttrList: keep the function name
            for n, _, v in _Reader(value, "NameAttrList").fields():
                if n == 1:
                    result = bytes(v).decode()
    return result


def parse_node(data: memoryview) -> NodeDef:
    node = NodeDef(name="", op="")
    for number, _, value in _Reader(data, "NodeDef").fields():
        if number == 1:
            node.name = bytes(value).decode()
        elif number == 2:
            node.op = bytes(value).decode()
        elif number == 3:
            node.inputs.append(bytes(value).decode())
        elif number == 4:
            node.device = bytes(value).decode()
        elif number == 5:  # map<string, AttrValue> entry
            key, attr = "", None
            for n, _, v in _Reader(value, "NodeDef.attr").fields():
                if n == 1:
                    key = bytes(v).decode()
                elif n == 2:
                    attr = v
            node.attrs[key] = parse_attr(attr) if attr is not None else None
    if not node.name or not node.op:
        raise GraphParseError(f"NodeDef without {'name' if not node.name else 'op'}")
    return node


class TFGraph:
    """The nodes of a frozen graph, by name, with helpers to read constants through ``Identity``."""

    def __init__(self, nodes: list[NodeDef], source: str = "<bytes>"):
        self.nodes = nodes
        self.source = source
        self.by_name: dict[str, NodeDef] = {}
        for node in nodes:
            if node.name in self.by_name:
                raise GraphParseError(f"{source}: duplicate node name {node.name!r}")
            self.by_name[node.name] = node

    def __len__(self) -> int:
        return len(self.nodes)

    def __contains__(self, name: str) -> bool:
        return strip_port(name) in self.by_name

    def __getitem__(self, name: str) -> NodeDef:
        try:
            return self.by_name[strip_port(name)]
        except KeyError:
            raise KeyError(f"{self.source}: no node named {name!r}") from None

    def resolve(self, name: str) -> NodeDef:
        """Follow ``Identity`` nodes (frozen variables read through ``ReadVariableOp``)."""
        node = self[name]
        seen = set()
        while node.op == "Identity" and node.data_inputs:
            if node.name in seen:
                raise GraphParseError(f"{self.source}: Identity cycle at {node.name!r}")
            seen.add(node.name)
            node = self[node.data_inputs[0]]
        return node

    def const(self, name: str) -> np.ndarray:
        node = self.resolve(name)
        if node.op != "Const":
            raise GraphParseError(f"{self.source}: {name!r} resolves to a {node.op} node, not a constant")
        value = node.attrs.get("value")
        if not isinstance(value, np.ndarray):
            raise GraphParseError(f"{self.source}: constant {node.name!r} has no tensor value")
        return value

    def input(self, node: NodeDef, index: int) -> NodeDef:
        return self[node.data_inputs[index]]

    def consumers(self, name: str) -> list[NodeDef]:
        return [n for n in self.nodes if name in n.data_inputs]

    def ops(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node in self.nodes:
            counts[node.op] = counts.get(node.op, 0) + 1
        return counts


def parse_graph(data: bytes | memoryview, source: str = "<bytes>") -> TFGraph:
    nodes: list[NodeDef] = []
    try:
        for number, wire, value in _Reader(memoryview(data), "GraphDef").fields():
            if number == 1:
                if wire != _LEN:
                    raise GraphParseError(f"GraphDef.node with wire type {wire}")
                nodes.append(parse_node(value))
    except GraphParseError as e:
        raise GraphParseError(f"{source}: not a readable TensorFlow GraphDef: {e}") from None
    except (ValueError, UnicodeDecodeError, struct.error) as e:
        raise GraphParseError(f"{source}: not a readable TensorFlow GraphDef: {e}") from None
    if not nodes:
        raise GraphParseError(f"{source}: not a TensorFlow GraphDef: no nodes")
    return TFGraph(nodes, source)


def read_graph(path: str | os.PathLike) -> TFGraph:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise GraphParseError(f"{path}: cannot read: {e.strerror or e}") from e
    return parse_graph(data, str(path))
