"""Writes PyTorch reference results for the Swift ResNet-18 parity tests.
usage: /usr/bin/python3 reference.py OUT_DIR

OUT_DIR/weights.safetensors    the model's state_dict before the training forward
                               (num_batches_tracked as I64)
OUT_DIR/reference.safetensors  x (4,1,32,32), labels (I64), logits_train, loss_train,
                               grad.<param> for every parameter (from loss_train.backward()),
                               after.<buffer> for every BN buffer after the training forward,
                               logits_eval (eval mode, with the updated running statistics)
OUT_DIR/sgd.safetensors        step1.<param>, step2.<param>: the parameters after one and two
                               steps of torch.optim.SGD(lr 0.05, momentum 0.9, weight_decay 5e-4,
                               nesterov False), fresh optimizer, the same grads both times
Everything in float32 on one thread, deterministic from fixed seeds."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch
from torch import nn
from torch.nn import functional as F

from safetensors_io import save_file
from seed_model import resnet18

LR, MOMENTUM, WEIGHT_DECAY = 0.05, 0.9, 5e-4


def main(out_dir):
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(0)
    net = resnet18(1, 10)

    # Move batch norm away from its initial state (gamma 1, beta 0, stats 0/1, 0 batches) so a
    # wrong use of gamma, beta or the running statistics shows; each layer gets its own
    # num_batches_tracked so a buffer loaded into the wrong layer shows too.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
        for i, bn in enumerate(bns):
            c = bn.num_features
            bn.weight.copy_(0.5 + torch.rand(c, generator=g))               # [0.5, 1.5)
            bn.bias.copy_(0.6 * torch.rand(c, generator=g) - 0.3)           # [-0.3, 0.3)
            bn.running_mean.copy_(0.4 * torch.rand(c, generator=g) - 0.2)   # [-0.2, 0.2)
            bn.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=g))    # [0.5, 2.0)
            bn.num_batches_tracked.fill_(3 + i)

    x = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    labels = torch.randint(0, 10, (4,), generator=torch.Generator().manual_seed(3))

    # The state before the training forward (which updates the running statistics).
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    for k, v in state.items():
        assert v.dtype == (torch.int64 if k.endswith("num_batches_tracked") else torch.float32), (k, v.dtype)
    meta = {"torch": torch.__version__, "model": "seed resnet18(1, 10)"}
    save_file(state, os.path.join(out_dir, "weights.safetensors"), meta)

    net.train()
    net.zero_grad(set_to_none=False)
    logits_train = net(x)
    loss_train = F.cross_entropy(logits_train, labels)
    loss_train.backward()

    ref = {"x": x, "labels": labels, "logits_train": logits_train.detach(),
           "loss_train": loss_train.detach().reshape(())}
    for name, p in net.named_parameters():
        ref["grad." + name] = p.grad.detach().clone()
    for name, b in net.named_buffers():
        ref["after." + name] = b.detach().clone()
    net.eval()
    with torch.no_grad():
        ref["logits_eval"] = net(x)
    save_file(ref, os.path.join(out_dir, "reference.safetensors"), meta)

    # SGD from the saved parameters (the forward did not change them), the same grads twice.
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, nesterov=False)
    sgd = {}
    for step in (1, 2):
        opt.step()
        for name, p in net.named_parameters():
            sgd[f"step{step}.{name}"] = p.detach().clone()
    save_file(sgd, os.path.join(out_dir, "sgd.safetensors"),
              {**meta, "lr": str(LR), "momentum": str(MOMENTUM), "weight_decay": str(WEIGHT_DECAY)})
    print(f"wrote {out_dir}: {len(state)} state tensors, loss {loss_train.item():.6f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: reference.py OUT_DIR")
    main(sys.argv[1])
