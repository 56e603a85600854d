"""The seed's ResNet-18 (d2l form), copied from the seed's PyTorch model
(shared/anchors/torch_resnet_bench.py) so these tests do not depend on files outside the repo.
Parameter and buffer names are the ones the Swift model uses: `0.0.weight`, `1.0.conv1.weight`,
`2.0.conv3.weight`, `4.1.bn2.bias`, `7.weight`, ... Width 64 only, as in the seed."""
from torch import nn
from torch.nn import functional as F


class Residual(nn.Module):
    def __init__(self, cin, cout, use_1x1conv=False, strides=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, stride=strides)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv3 = nn.Conv2d(cin, cout, 1, stride=strides) if use_1x1conv else None
        self.bn1 = nn.BatchNorm2d(cout); self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, X):
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3 is not None: X = self.conv3(X)
        return F.relu(Y + X)


def resnet_block(cin, cout, n, first_block=False):
    return [Residual(cin, cout, True, 2) if i == 0 and not first_block else Residual(cout, cout) for i in range(n)]


def resnet18(channels, classes=10):
    b1 = nn.Sequential(nn.Conv2d(channels, 64, 7, stride=2, padding=3), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
    return nn.Sequential(b1, nn.Sequential(*resnet_block(64, 64, 2, True)), nn.Sequential(*resnet_block(64, 128, 2)),
                         nn.Sequential(*resnet_block(128, 256, 2)), nn.Sequential(*resnet_block(256, 512, 2)),
                         nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(512, classes))
