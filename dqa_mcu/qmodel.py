"""The quantized model: plain data read by the reference and code generation.

Saved as one .npz: arrays under "<node>/<name>" / "<tensor>/<name>" and the
structure as JSON under "__model__". Loading never unpickles (allow_pickle=False).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dqa_mcu.bitpack import plane_bytes
from dqa_mcu.huffman import HuffmanCode

FORMAT_VERSION = 1


@dataclass
class QTensor:
    """A stored activation tensor (docs/spec.md, sections 1-2)."""
    name: str
    shape: tuple[int, int, int]  # (H, W, C)
    bits: int  # n
    signed: bool
    extra_bits: int  # m; 0 = direct
    scale: np.ndarray  # float64 (C,): real value of one n-bit step
    important: np.ndarray  # bool (C,)
    huffman: HuffmanCode | None = None
    err_capacity_bits: int = 0
    err_row_capacity_bits: int = 0  # a row-streamed tensor's error stream per row (spec 2.4)
    alias_of: str | None = None  # flatten: shares storage with this tensor
    lut: np.ndarray | None = None  # input tensor: int8 (C, 256) pixel -> v

    @property
    def channels(self) -> int:
        return self.shape[2]

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1] * self.shape[2]

    @property
    def important_count(self) -> int:
        """Important elements per image (symbols in the error stream)."""
        return int(self.important.sum()) * self.shape[0] * self.shape[1]

    @property
    def plane_bytes(self) -> int:
        return plane_bytes(self.size, self.bits)

    @property
    def has_errors(self) -> bool:
        """DQA with important channels: the tensor has an error stream."""
        return self.extra_bits > 0 and bool(self.important.any())

    @property
    def stream_bytes(self) -> int:
        """Error stream buffer: capacity plus one byte of decoder look-ahead."""
        if not self.has_errors:
            return 0
        return (self.err_capacity_bits + 7) // 8 + 1

    @property
    def stored_bytes(self) -> int:
        return 0 if self.alias_of else self.plane_bytes + self.stream_bytes

    def range_of(self, channel_bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Storage range per channel for the given per-channel code widths."""
        bits = channel_bits.astype(np.int64)
        if self.signed:
            return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        return np.zeros_like(bits), (1 << bits) - 1

    @property
    def storage_bits(self) -> np.ndarray:
        """Per channel: n + m for important channels, n for the others."""
        return self.bits + self.extra_bits * self.important.astype(np.int64)

    @property
    def storage_step(self) -> np.ndarray:
        """Real value of one storage-domain step per channel."""
        return self.scale / np.where(self.important, 2.0 ** self.extra_bits, 1.0)

    @property
    def fine_step(self) -> np.ndarray:
        """Real value of one fine-domain step (what consumers see)."""
        return self.scale / 2.0 ** self.extra_bits


@dataclass
class QNode:
    name: str
    op: str
    inputs: list[str]
    output: str
    attrs: dict = field(default_factory=dict)  # ints, tuples, strings
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # weights, multipliers


@dataclass
class QModel:
    nodes: list[QNode]
    tensors: dict[str, QTensor]
    input: str
    output: str
    config: dict = field(default_factory=dict)  # how it was quantized (for reports)

    def consumers(self, tensor: str) -> list[QNode]:
        return [n for n in self.nodes if tensor in n.inputs]

    def storage_of(self, tensor: str) -> QTensor:
        t = self.tensors[tensor]
        return self.tensors[t.alias_of] if t.alias_of else t

    # -- file format -------------------------------------------------------
    def save(self, path: str | Path) -> None:
        arrays: dict[str, np.ndarray] = {}
        tensors = []
        for t in self.tensors.values():
            arrays[f"{t.name}/scale"] = t.scale
            arrays[f"{t.name}/important"] = t.important
            if t.lut is not None:
                arrays[f"{t.name}/lut"] = t.lut
            tensors.append({
                "name": t.name, "shape": list(t.shape), "bits": t.bits, "signed": t.signed,
                "extra_bits": t.extra_bits, "err_capacity_bits": t.err_capacity_bits,
                "err_row_capacity_bits": t.err_row_capacity_bits, "alias_of": t.alias_of,
                "huffman_lengths": list(t.huffman.lengths) if t.huffman else None,
            })
        nodes = []
        for n in self.nodes:
            for k, a in n.arrays.items():
                arrays[f"{n.name}/{k}"] = a
            nodes.append({"name": n.name, "op": n.op, "inputs": n.inputs, "output": n.output,
                          "attrs": n.attrs, "arrays": sorted(n.arrays)})
        header = {"format": "dqa-mcu-qmodel", "version": FORMAT_VERSION, "input": self.input,
                  "output": self.output, "config": self.config, "tensors": tensors, "nodes": nodes}
        arrays["__model__"] = np.array(json.dumps(header, sort_keys=True))
        with open(path, "wb") as f:
            np.savez_compressed(f, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "QModel":
        try:
            data = np.load(path, allow_pickle=False)
            header = json.loads(str(data["__model__"]))
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"{path}: not a dqa-mcu quantized model file ({exc})") from None
        if header.get("format") != "dqa-mcu-qmodel" or header.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported quantized model format/version")
        tensors = {}
        for t in header["tensors"]:
            name = t["name"]
            lengths = t["huffman_lengths"]
            tensors[name] = QTensor(
                name=name, shape=tuple(t["shape"]), bits=t["bits"], signed=t["signed"],
                extra_bits=t["extra_bits"], scale=data[f"{name}/scale"],
                important=data[f"{name}/important"],
                huffman=HuffmanCode(tuple(lengths)) if lengths else None,
                err_capacity_bits=t["err_capacity_bits"],
                err_row_capacity_bits=t.get("err_row_capacity_bits", 0), alias_of=t["alias_of"],
                lut=data[f"{name}/lut"] if f"{name}/lut" in data else None)
        nodes = [QNode(n["name"], n["op"], n["inputs"], n["output"], _tuples(n["attrs"]),
                       {k: data[f"{n['name']}/{k}"] for k in n["arrays"]})
                 for n in header["nodes"]]
        return cls(nodes, tensors, header["input"], header["output"], header["config"])


def _tuples(attrs: dict) -> dict:
    """JSON turns tuples into lists; attrs use tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in attrs.items()}
