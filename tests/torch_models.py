"""Small PyTorch models for the tests of model discovery, capture and analysis, built
offline at fixed seeds."""

import torch
from torch import nn
from torch.nn import functional as F


def seeded(seed):
    """Set PyTorch's global seed (the tests build modules under it)."""
    torch.manual_seed(seed)


def randomise_batchnorm(model, seed=0):
    """Give every batch norm running statistics and affine parameters away from the
    defaults, so that folding them in is tested."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                shape = module.running_mean.shape
                module.running_mean.copy_(torch.randn(shape, generator=generator))
                module.running_var.copy_(torch.rand(shape, generator=generator) + 0.5)
                module.weight.copy_(torch.randn(shape, generator=generator))
                module.bias.copy_(torch.randn(shape, generator=generator))
    return model


class ResidualMLP(nn.Module):
    """``x -> ReLU(fc1 x) -> fc2 -> + x -> ReLU -> head``: one ReLU layer inside the block,
    one ReLU after the residual sum."""

    def __init__(self, width=12, hidden=36, classes=3):
        super().__init__()
        self.stem = nn.Linear(6, width)
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        h = F.relu(self.stem(x))
        r = torch.relu(self.fc1(h))
        h = F.relu(self.fc2(r) + h)
        return self.head(h)


def _example(name):
    """A module of docs/examples, imported from its file."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: The OPT family's pre-LayerNorm feed-forward block on token sequences,
#: ``x + fc2(ReLU(fc1(LN(x))))``: the class of docs/examples/feedforward_report.py.
feedforward_example = _example("feedforward_report")
FeedForward = feedforward_example.FeedForward


class Branching(nn.Module):
    """Data-dependent control flow: does not trace with torch.fx."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 10)
        self.b = nn.Linear(10, 20)

    def forward(self, x):
        if x.sum() > -1e9:  # always taken, but fx cannot know
            x = x * 1.0
        return nn.functional.relu(self.b(torch.relu(self.a(x))))


class ConvNet(nn.Module):
    """Conv–BN–ReLU (in place), a functional ReLU on a 1-D conv, pooling, Linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.act = nn.ReLU(inplace=True)
        self.line = nn.Conv1d(3, 4, 2, dilation=2)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 12, 5)

    def forward(self, x):
        h = self.act(self.bn(self.conv(x)))  # (3, 5, 5) from (2, 9, 9)
        pooled = self.pool(h)  # (3, 2, 2)
        line = F.relu(self.line(h.flatten(2)))  # (4, 21) from (3, 25)
        return self.fc(line[:, :, :12].flatten(1)) + F.relu(pooled).sum()
