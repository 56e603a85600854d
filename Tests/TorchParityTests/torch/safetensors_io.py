"""A minimal safetensors reader/writer (numpy + torch; the `safetensors` package is not needed).
Format: [8 bytes: header length N, little-endian u64][N bytes: JSON header, padded with spaces
to a multiple of 8][data]. The header maps each tensor name to {"dtype", "shape",
"data_offsets": [begin, end]} (offsets relative to the data block) plus an optional
"__metadata__" object of string -> string. Data is raw little-endian."""
import json
import struct

import numpy as np
import torch

DTYPES = {  # safetensors dtype -> little-endian numpy dtype
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
    "I8": "i1", "U8": "u1", "BOOL": "?",
}
NAMES = {np.dtype(v): k for k, v in DTYPES.items()}


def _as_numpy(t):
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().contiguous().numpy()
    a = np.asarray(t)
    # (not np.ascontiguousarray: it turns a 0-d array such as num_batches_tracked into shape [1])
    return a if a.flags.c_contiguous else a.copy(order="C")


def save_file(tensors, path, metadata=None):
    """Writes `tensors` (name -> torch.Tensor or numpy array, in the given order) to `path`."""
    header, chunks, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in tensors.items():
        a = _as_numpy(t)
        dtype = NAMES.get(a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype)
        if dtype is None:
            raise ValueError(f"{name}: unsupported dtype {a.dtype}")
        data = a.astype(DTYPES[dtype], copy=False).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for c in chunks:
            f.write(c)


def load_file(path):
    """Returns (tensors: name -> numpy array, dtypes: name -> safetensors dtype, metadata)."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError(f"{path}: header length {n} runs past the end of the file")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {}) or {}
    data = raw[8 + n:]
    tensors, dtypes, covered = {}, {}, 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        begin, end = info["data_offsets"]
        if begin != covered:
            raise ValueError(f"{path}: tensor {name} starts at {begin}, expected {covered}")
        dt = np.dtype(DTYPES[info["dtype"]])
        shape = tuple(info["shape"])
        count = int(np.prod(shape, dtype=np.int64))
        if end - begin != count * dt.itemsize:
            raise ValueError(f"{path}: tensor {name} has {end - begin} bytes for shape {shape} {info['dtype']}")
        tensors[name] = np.frombuffer(data[begin:end], dtype=dt).reshape(shape).copy()
        dtypes[name] = info["dtype"]
        covered = end
    if covered != len(data):
        raise ValueError(f"{path}: tensors cover {covered} bytes of {len(data)}")
    return tensors, dtypes, metadata


def load_torch(path):
    """Like load_file, with torch tensors."""
    tensors, dtypes, metadata = load_file(path)
    return {k: torch.from_numpy(v) for k, v in tensors.items()}, dtypes, metadata
