"""LinearNet: the tutorial's two-layer perceptron for 28x28 digits."""

from __future__ import annotations

from torch import Tensor, nn


class LinearNet(nn.Module):
    """784 -> hidden -> 10, returning logits.

    No Softmax at the end: CrossEntropyLoss applies log-softmax itself, and a
    second softmax flattens the gradients (the tutorial's version does this).
    """

    def __init__(self, hidden: int = 32, n_inputs: int = 28 * 28, n_classes: int = 10) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(n_inputs, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
