"""Importer fuzzing (docs/reliability.md): mutated copies of the real models in ../shared go through the
importers as `dqa-mcu export` calls them (``api.load_tflite_int8`` for an int8 .tflite, ``api.load`` for the
rest: the importer, then the graph passes). Every outcome must be a graph or one clear line (a ValueError,
of which GraphError, DataError and TFLiteFormatError are kinds, with a one-line message), never another
exception, never a run past TIME_LIMIT_S, never a peak resident memory RSS_LIMIT_BYTES above the test's.

Mutations: raw bytes (bit flips, 32-bit words set to boundary values, truncations), and structural ones
that keep the container readable so the importer's own checks are reached: TFLite tensors, operators and
vectors rewritten through the flatbuffer schema (oversized and negative dimensions, huge tensor counts,
bad indices and options); Keras .h5 model configs (JSON values); torch.export programs (JSON values,
truncated weights); TorchScript archives (integer literals in the code, truncated tensors, pickles).

Example counts are sized for about a minute in CI and derandomized (the same inputs every run);
DQA_FUZZ_SCALE=k multiplies them and draws new inputs, for longer campaigns by hand.
"""
from __future__ import annotations

import copy
import io
import json
import logging
import os
import re
import resource
import signal
import struct
import zipfile
from pathlib import Path

import flatbuffers
import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from dqa_mcu import api
from dqa_mcu.frontends.tflite_import import UnsupportedTFLiteOpError
from dqa_mcu.reference.tflite import TFLiteReference

from conftest import shared_file

TIME_LIMIT_S = 30
RSS_LIMIT_BYTES = 1 << 30
SCALE = float(os.environ.get("DQA_FUZZ_SCALE", "1"))
INT8_MODELS = ("mlperf_tiny_ic_resnet8_int8.tflite", "mlperf_tiny_kws_dscnn_int8.tflite")
KERAS_MODEL = "mlperf_tiny_ic_resnet8.h5"
TORCH_MODELS = ("sr_x2_cifar.pt2", "sr_x2_cifar.ts.pt")  # the smallest torch.export and TorchScript files
SR_INPUT = (16, 16, 3)

BOUNDARY_INTS = (-2 ** 63, -2 ** 31, -65536, -1, 0, 1, 2, 3, 127, 255, 65535, 2 ** 31 - 1, 2 ** 32 - 1, 2 ** 63 - 1)
BOUNDARY_VALUES = BOUNDARY_INTS + (10 ** 12, -0.5, 1e308, float("nan"), None, True, "", "x", [], {},
                                   [2 ** 31 - 1, 2 ** 31 - 1], [-1, -1, -1, -1])


def fuzz_settings(examples: int):
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, derandomize=SCALE == 1,
                    database=None, phases=[Phase.explicit, Phase.generate],  # no shrinking: loads are slow
                    suppress_health_check=list(HealthCheck))


# -- the outcome check ----------------------------------------------------------------------------

class ImportHang(BaseException):
    """Raised by the alarm: a BaseException, so the importers' `except Exception` cannot absorb it."""


class LoggedTracebacks(logging.Handler):
    """Records warnings and errors logged with a traceback (a user would see it printed) by any logger
    that prints: the root's, and those with handlers of their own (torch's and TensorFlow's have)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self.loggers = [logging.getLogger()] + [log for log in logging.Logger.manager.loggerDict.values()
                                                if isinstance(log, logging.Logger) and log.handlers]

    def emit(self, record):
        if record.exc_info:
            self.records.append(record)


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _on_alarm(signum, frame):
    raise ImportHang(f"import still running after {TIME_LIMIT_S} s")


class Outcomes:
    """Runs imports of mutated bytes and counts their outcomes (printed with -s, for the docs' figures)."""

    def __init__(self, folder: Path, name: str, load):
        self.path, self.load = folder / name, load
        self.rss_start = _peak_rss_bytes()
        self.counts = {"graph": 0, "one line": 0}

    def check(self, data: bytes) -> None:
        self.path.write_bytes(data)
        tracebacks = LoggedTracebacks()
        for log in tracebacks.loggers:
            log.addHandler(tracebacks)
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT_S)
        try:
            self.load(self.path)
            self.counts["graph"] += 1
        except ValueError as exc:
            message = str(exc)
            assert message and "\n" not in message, f"not one line: {message!r}"
            self.counts["one line"] += 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            for log in tracebacks.loggers:
                log.removeHandler(tracebacks)
        assert not tracebacks.records, f"a traceback was logged: {tracebacks.records[0].getMessage()}"
        grown = _peak_rss_bytes() - self.rss_start
        assert grown < RSS_LIMIT_BYTES, f"peak RSS grew by {grown >> 20} MiB"

    def report(self) -> None:
        print(f"{self.path.name}: {sum(self.counts.values())} inputs, {self.counts}")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def load_int8(path: Path):
    return api.load_tflite_int8(str(path))


def load_float(input_shape):
    return lambda path: api.load(path, input_shape)


# -- byte-level mutations (any file) ----------------------------------------------------------------

def byte_mutations(size: int, positions: list[int] | None = None):
    """1-3 of: flip a bit, set a 32-bit word to a boundary value, truncate; at any byte or, when given,
    at `positions` (a format's structure rather than its weights)."""
    anywhere = st.integers(0, size - 1)
    where = anywhere if not positions else st.one_of(anywhere, st.sampled_from(positions))
    flip = st.tuples(st.just("flip"), where, st.integers(0, 7))
    word = st.tuples(st.just("word"), where, st.sampled_from(BOUNDARY_INTS))
    truncate = st.tuples(st.just("truncate"), anywhere, st.just(0))
    return st.lists(st.one_of(flip, word, truncate), min_size=1, max_size=3)


def mutate_bytes(data: bytes, mutations) -> bytes:
    out = bytearray(data)
    for kind, at, value in mutations:
        if kind == "flip" and at < len(out):
            out[at] ^= 1 << value
        elif kind == "word" and at + 4 <= len(out):
            out[at:at + 4] = struct.pack("<I", value & 0xFFFFFFFF)
        elif kind == "truncate":
            del out[at:]
    return bytes(out)


# -- JSON mutations (Keras configs, torch.export programs) --------------------------------------------

def json_paths(doc, path=()) -> list[tuple]:
    """Paths to every value in a JSON document."""
    paths = [path]
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        paths += json_paths(value, path + (key,))
    return paths


def mutate_json(doc, path: tuple, value):
    """A copy of `doc` with the value at `path` replaced (the root itself when the path is empty)."""
    if not path:
        return value
    doc = json.loads(json.dumps(doc))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return doc


def json_mutations(doc):
    """1-3 (path, boundary value) replacements, numbers and shapes more likely than the rest."""
    paths = json_paths(doc)
    numeric = [p for p in paths if _at(doc, p) is not None and isinstance(_at(doc, p), (int, float, list))]
    where = st.one_of(st.sampled_from(numeric), st.sampled_from(paths))
    return st.lists(st.tuples(where, st.sampled_from(BOUNDARY_VALUES)), min_size=1, max_size=3)


def _at(doc, path: tuple):
    for key in path:
        doc = doc[key]
    return doc


def apply_json(doc, mutations):
    for path, value in mutations:
        try:
            doc = mutate_json(doc, path, value)
        except (KeyError, IndexError, TypeError):  # an earlier replacement removed this path
            pass
    return doc


# -- TFLite: structural mutations through the schema ------------------------------------------------

def _schema():
    from ai_edge_litert import schema_py_generated as schema
    return schema


def _vector_fields(buf: bytes) -> list[int]:
    """Byte positions of the length words of the model's main vectors (operator codes, buffers,
    subgraphs; a subgraph's tensors, inputs, outputs, operators): where a huge count is written."""
    schema = _schema()
    model = schema.Model.GetRootAs(buf, 0)
    subgraph = model.Subgraphs(0)
    fields = [(model._tab, 6), (model._tab, 8), (model._tab, 12)] + [(subgraph._tab, slot) for slot in (4, 6, 8, 10)]
    positions = []
    for table, slot in fields:
        offset = table.Offset(slot)
        if offset:
            positions.append(table.Vector(offset) - 4)
    return positions


def _structure_positions(buf: bytes) -> list[int]:
    """Every byte outside the weight buffers' data."""
    schema = _schema()
    model = schema.Model.GetRootAs(buf, 0)
    in_data = np.zeros(len(buf), bool)
    for i in range(model.BuffersLength()):
        table = model.Buffers(i)._tab
        offset = table.Offset(4)
        if offset:
            start = table.Vector(offset)
            in_data[start:start + table.VectorLen(offset)] = True
    return [int(p) for p in np.flatnonzero(~in_data)]


def tflite_rewrites(model):
    """1-3 edits of the unpacked model (ai_edge_litert's ModelT): a tensor's shape, type, buffer or
    quantization, an operator's operands, opcode or options, the graph's inputs and outputs."""
    subgraph = model.subgraphs[0]
    tensor = st.integers(0, len(subgraph.tensors) - 1)
    op = st.integers(0, len(subgraph.operators) - 1)
    value = st.sampled_from(BOUNDARY_INTS)
    return st.lists(st.one_of(
        st.tuples(st.just("dim"), tensor, st.integers(0, 3), value),
        st.tuples(st.just("shape"), tensor, st.lists(st.integers(-2, 70000), max_size=6), st.none()),
        st.tuples(st.just("type"), tensor, st.integers(-1, 20), st.none()),
        st.tuples(st.just("buffer"), tensor, value, st.none()),
        st.tuples(st.just("scale"), tensor, st.sampled_from([[], [0.0], [-1.0], [float("nan")], [1.0] * 70]),
                  st.sampled_from([None, [], [300], [0] * 70])),
        st.tuples(st.just("qdim"), tensor, value, st.none()),
        st.tuples(st.just("operand"), op, st.integers(0, 4), value),
        st.tuples(st.just("opcode"), op, value, st.none()),
        st.tuples(st.just("option"), op, st.integers(0, 12), value),
        st.tuples(st.just("io"), st.sampled_from(["inputs", "outputs"]), st.lists(value, max_size=3), st.none()),
        st.tuples(st.just("tensors"), st.integers(0, 2000), st.none(), st.none()),
    ), min_size=1, max_size=3)


def rewrite_tflite(model, edits) -> bytes:
    model = copy.deepcopy(model)
    subgraph = model.subgraphs[0]
    for kind, a, b, c in edits:
        if kind == "dim":
            t = subgraph.tensors[a]
            if t.shape is not None and len(t.shape):
                t.shape = list(t.shape)
                t.shape[b % len(t.shape)] = c
        elif kind == "shape":
            subgraph.tensors[a].shape = b
        elif kind == "type":
            subgraph.tensors[a].type = b
        elif kind == "buffer":
            subgraph.tensors[a].buffer = b
        elif kind == "scale":
            q = subgraph.tensors[a].quantization
            if q is not None:
                q.scale, q.zeroPoint = b, c
        elif kind == "qdim":
            q = subgraph.tensors[a].quantization
            if q is not None:
                q.quantizedDimension = b
        elif kind == "operand":
            o = subgraph.operators[a]
            operands = list(o.inputs) + list(o.outputs)
            operands[b % len(operands)] = c
            o.inputs, o.outputs = operands[:len(o.inputs)], operands[len(o.inputs):]
        elif kind == "opcode":
            subgraph.operators[a].opcodeIndex = b
        elif kind == "option":
            options = subgraph.operators[a].builtinOptions
            fields = sorted(k for k, v in vars(options).items() if isinstance(v, (int, float))) if options else []
            if fields:
                setattr(options, fields[b % len(fields)], c)
        elif kind == "io":
            setattr(subgraph, a, b)
        elif kind == "tensors":  # a huge tensor count: the tensors repeated
            subgraph.tensors = subgraph.tensors * (1 + a // len(subgraph.tensors))
    builder = WrappingBuilder(1 << 16)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


class WrappingBuilder(flatbuffers.Builder):
    """Stores any integer in any field, cut to the field's width as a C cast would (an oversized
    dimension in an int32 field, -1 in a uint32 buffer index, 255 in an int8 enum)."""

    def Place(self, x, flags):
        super().Place(_wrapped(x, flags), flags)

    def PrependSlot(self, flags, o, x, d):
        super().PrependSlot(flags, o, _wrapped(x, flags), d)


def _wrapped(value, flags):
    if flags.min_val is None or not isinstance(value, int):
        return value
    if isinstance(flags.max_val, bool):
        return bool(value)
    bits = 8 * flags.bytewidth
    value &= (1 << bits) - 1
    return value - (1 << bits) if flags.min_val < 0 and value >= 1 << (bits - 1) else value


def _tflite_cases(name: str):
    data = shared_file(f"models/{name}").read_bytes()
    return data, _schema().ModelT.InitFromPackedBuf(data, 0), _structure_positions(data), _vector_fields(data)


# ResNet-8 int8: tensor 22 is the first conv's output (and the first ADD's input), 8 its weights, 25 the ADD's
# output; each edit breaks a range the C kernels rest on (docs/spec_tflite.md 1, 2, 3.4)
RANGE_EDITS = [
    (("scale", 22, [-1.0], [-128]), "has scale -1.0; a positive finite scale expected"),
    (("scale", 22, [float("nan")], [-128]), "has scale nan; a positive finite scale expected"),
    (("scale", 22, [0.05], [300]), "has zero point 300, outside int8"),
    (("scale", 8, [-0.01] * 16, [0] * 16), "weight scales must be finite and not negative"),
    (("scale", 22, [1e-15], [-128]), "CONV_2D at index 0: a rescaling factor of 2^31 or more"),
    (("scale", 25, [2.65e-7], [-128]), "ADD at index 3: an output scale 2^18 times finer than its inputs'"),  # shift 0
]


@pytest.mark.parametrize("edit, message", RANGE_EDITS)
def test_a_scale_or_zero_point_the_kernels_cannot_take_is_refused_in_one_line(edit, message, folder):
    _, model, _, _ = _tflite_cases(INT8_MODELS[0])
    path = folder / "range_edit.tflite"
    path.write_bytes(rewrite_tflite(model, [edit]))
    with pytest.raises(UnsupportedTFLiteOpError) as raised:
        TFLiteReference(load_int8(path))  # the import's checks, then the reference's (what export runs)
    assert message in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("name", INT8_MODELS)
def test_mutated_int8_tflite_gives_a_graph_or_one_line(name, folder):
    data, model, structure, vectors = _tflite_cases(name)
    outcomes = Outcomes(folder, name, load_int8)
    outcomes.check(data)
    assert outcomes.counts["graph"] == 1

    @fuzz_settings(250)
    @given(st.data())
    def fuzz(draw):
        kind = draw.draw(st.sampled_from(["bytes", "counts", "schema"]))
        if kind == "bytes":
            outcomes.check(mutate_bytes(data, draw.draw(byte_mutations(len(data), structure))))
        elif kind == "counts":
            outcomes.check(mutate_bytes(data, [("word", draw.draw(st.sampled_from(vectors)),
                                                draw.draw(st.sampled_from(BOUNDARY_INTS)))]))
        else:
            outcomes.check(rewrite_tflite(model, draw.draw(tflite_rewrites(model))))

    fuzz()
    outcomes.report()


# -- Keras .h5 and the float .tflite converted from it ------------------------------------------------

@pytest.fixture(scope="module")
def keras_cases(folder):
    """(the .h5 bytes, its model config, a float .tflite converted from it)."""
    tf = pytest.importorskip("tensorflow")
    path = shared_file(f"models/{KERAS_MODEL}")
    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])
    model = tf.keras.models.load_model(str(path), compile=False)
    fixed_batch = tf.keras.Input(batch_shape=(1, 32, 32, 3))  # no run-time shape ops in the .tflite
    float_tflite = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(fixed_batch, model(fixed_batch))).convert()
    return path.read_bytes(), config, float_tflite


def with_model_config(data: bytes, config) -> bytes:
    """The .h5 file `data` with its model_config attribute replaced."""
    buffer = io.BytesIO(data)
    with h5py.File(buffer, "r+") as f:
        f.attrs["model_config"] = json.dumps(config)
    return buffer.getvalue()


def test_mutated_keras_h5_gives_a_graph_or_one_line(keras_cases, folder):
    data, config, _ = keras_cases
    outcomes = Outcomes(folder, KERAS_MODEL, load_float((32, 32, 3)))
    outcomes.check(data)
    assert outcomes.counts["graph"] == 1

    @fuzz_settings(30)
    @given(st.data())
    def fuzz(draw):
        if draw.draw(st.booleans()):
            outcomes.check(with_model_config(data, apply_json(config, draw.draw(json_mutations(config)))))
        else:
            outcomes.check(mutate_bytes(data, draw.draw(byte_mutations(len(data)))))

    fuzz()
    outcomes.report()


def test_mutated_float_tflite_gives_a_graph_or_one_line(keras_cases, folder):
    data = keras_cases[2]
    model = _schema().ModelT.InitFromPackedBuf(data, 0)
    structure, vectors = _structure_positions(data), _vector_fields(data)
    outcomes = Outcomes(folder, "resnet8_float.tflite", load_float((32, 32, 3)))
    outcomes.check(data)
    assert outcomes.counts["graph"] == 1

    @fuzz_settings(120)
    @given(st.data())
    def fuzz(draw):
        kind = draw.draw(st.sampled_from(["bytes", "counts", "schema"]))
        if kind == "bytes":
            outcomes.check(mutate_bytes(data, draw.draw(byte_mutations(len(data), structure))))
        elif kind == "counts":
            outcomes.check(mutate_bytes(data, [("word", draw.draw(st.sampled_from(vectors)),
                                                draw.draw(st.sampled_from(BOUNDARY_INTS)))]))
        else:
            outcomes.check(rewrite_tflite(model, draw.draw(tflite_rewrites(model))))

    fuzz()
    outcomes.report()


# -- torch.export (.pt2) and TorchScript archives -----------------------------------------------------

def zip_entries(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {info.filename: z.read(info) for info in z.infolist()}


def as_zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
        for name, content in entries.items():
            z.writestr(name, content)
    return buffer.getvalue()


INTEGER_LITERAL = re.compile(rb"(?<![\w.])\d+(?![\w.])")


def torch_rewrites(entries: dict[str, bytes]):
    """An archive entry rewritten: a JSON value (programs, configs), an integer literal (TorchScript
    code), or the entry truncated or bit-flipped (weights, pickles)."""
    names = sorted(entries)
    json_names = [n for n in names if n.endswith(".json")]
    code_names = [n for n in names if n.endswith(".py")]
    options = [st.tuples(st.just("truncate"), st.sampled_from(names), st.floats(0, 1)),
               st.tuples(st.just("flip"), st.sampled_from(names), st.integers(0, 1 << 30))]
    if json_names:
        options.append(st.tuples(st.just("json"), st.sampled_from(json_names), st.randoms(use_true_random=False)))
    if code_names:
        options.append(st.tuples(st.just("literal"), st.sampled_from(code_names), st.randoms(use_true_random=False)))
    return st.one_of(options)


def rewrite_entry(entries: dict[str, bytes], edit) -> dict[str, bytes]:
    kind, name, arg = edit
    entries, content = dict(entries), entries[name]
    if kind == "truncate":
        entries[name] = content[:int(len(content) * arg)]
    elif kind == "flip" and content:
        flipped = bytearray(content)
        flipped[arg % len(flipped)] ^= 1 << (arg % 8)
        entries[name] = bytes(flipped)
    elif kind == "json":
        doc = json.loads(content)
        path = arg.choice(json_paths(doc))
        entries[name] = json.dumps(mutate_json(doc, path, arg.choice(BOUNDARY_VALUES))).encode()
    elif kind == "literal":
        literals = list(INTEGER_LITERAL.finditer(content))
        if literals:
            m = arg.choice(literals)
            entries[name] = content[:m.start()] + str(arg.choice(BOUNDARY_INTS)).encode() + content[m.end():]
    return entries


@pytest.mark.parametrize("name", TORCH_MODELS)
def test_mutated_torch_archives_give_a_graph_or_one_line(name, folder):
    data = shared_file(f"models/{name}").read_bytes()
    entries = zip_entries(data)
    outcomes = Outcomes(folder, name, load_float(SR_INPUT))
    outcomes.check(data)
    assert outcomes.counts["graph"] == 1

    @fuzz_settings(20)
    @given(st.data())
    def fuzz(draw):
        if draw.draw(st.booleans()):
            outcomes.check(as_zip(rewrite_entry(entries, draw.draw(torch_rewrites(entries)))))
        else:
            outcomes.check(mutate_bytes(data, draw.draw(byte_mutations(len(data)))))

    fuzz()
    outcomes.report()


def test_a_damaged_torchscript_debug_record_is_not_read(folder):
    """Found by the fuzzer: one bit flipped in a .debug_pkl (source ranges) crashed the process in
    torch's graph printer while converting; the importer now loads the archive without them."""
    name = TORCH_MODELS[1]
    entries = zip_entries(shared_file(f"models/{name}").read_bytes())
    record = "sr_x2_cifar.ts/code/__torch__/torch/nn/modules/conv/___torch_mangle_22.py.debug_pkl"
    damaged = bytearray(entries[record])
    damaged[1301] ^= 1 << 5
    outcomes = Outcomes(folder, name, load_float(SR_INPUT))
    outcomes.check(as_zip({**entries, record: bytes(damaged)}))
    assert outcomes.counts["graph"] == 1


def test_a_negative_operand_index_is_one_line(keras_cases, folder):
    """Found by the fuzzer: an operand index below -1 (the mark of an absent optional input) passed the
    reader and failed in the float converter with an IndexError."""
    model = _schema().ModelT.InitFromPackedBuf(keras_cases[2], 0)
    add = next(i for i, o in enumerate(model.subgraphs[0].operators) if len(o.inputs) == 2)
    outcomes = Outcomes(folder, "resnet8_float.tflite", load_float((32, 32, 3)))
    outcomes.check(rewrite_tflite(model, [("operand", add, 1, -2 ** 31)]))
    assert outcomes.counts["one line"] == 1


@pytest.mark.parametrize("edits", [
    [("operand", 0, 1, 3)],  # a first CONV_2D reading a 1-D constant as its weights: an IndexError
    [("option", 0, 6, 0)],   # a stride of 0 (strideW: the options' numeric fields in sorted order)
    [("operand", 0, 2, 0)],  # the model input as the bias: an AttributeError on its missing data
], ids=["weights-rank", "zero-stride", "bias-not-constant"])
def test_inconsistent_float_operators_are_one_line(keras_cases, folder, edits):
    """Found by the fuzzer: the float converter indexed weights of the wrong rank, divided by a zero
    stride and read a bias that is not a constant; the reader now refuses them, as it does for int8."""
    model = _schema().ModelT.InitFromPackedBuf(keras_cases[2], 0)
    outcomes = Outcomes(folder, "resnet8_float.tflite", load_float((32, 32, 3)))
    outcomes.check(rewrite_tflite(model, edits))
    assert outcomes.counts["one line"] == 1


def test_a_damaged_pt2_archive_is_one_line_without_a_logged_traceback(folder):
    """Found by the fuzzer: a flipped bit in the zip header raised torch's RuntimeError, after torch.export
    had printed the traceback of the first error."""
    data = bytearray(shared_file(f"models/{TORCH_MODELS[0]}").read_bytes())
    data[0] ^= 1
    outcomes = Outcomes(folder, TORCH_MODELS[0], load_float(SR_INPUT))
    outcomes.check(bytes(data))
    assert outcomes.counts["one line"] == 1
