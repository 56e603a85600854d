"""Loads a safetensors file written by the Swift project into the seed's PyTorch ResNet-18
with load_state_dict(strict=True) and checks it tensor by tensor.
usage: /usr/bin/python3 load_check.py FILE
Prints one line: `OK tensors=N sum=S nbt=T meta=k=v,...` (S: float64 sum of every value,
T: the sum of every num_batches_tracked) or exits non-zero with the reason."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
import torch

from safetensors_io import load_torch
from seed_model import resnet18


def main(path):
    tensors, dtypes, metadata = load_torch(path)
    for name, dt in dtypes.items():
        want = "I64" if name.endswith("num_batches_tracked") else "F32"
        if dt != want:
            sys.exit(f"{path}: tensor {name} stored as {dt}, expected {want}")
    net = resnet18(1, 10)
    net.load_state_dict(tensors, strict=True)
    sd = net.state_dict()
    total, nbt = 0.0, 0
    for name, t in sd.items():
        if tuple(t.shape) != tuple(tensors[name].shape):
            sys.exit(f"{path}: tensor {name} has shape {list(tensors[name].shape)}, the model has {list(t.shape)}")
        if not torch.equal(t, tensors[name].to(t.dtype)):
            sys.exit(f"{path}: tensor {name} differs after load_state_dict")
        total += float(t.double().sum())
        if name.endswith("num_batches_tracked"):
            nbt += int(t)
    meta = ",".join(f"{k}={metadata[k]}" for k in sorted(metadata))
    print(f"OK tensors={len(sd)} sum={total!r} nbt={nbt} meta={meta}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: load_check.py FILE")
    main(sys.argv[1])
