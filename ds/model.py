"""The models a config can name: LinearNet (the tutorial's) and an MLP."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

ACTIVATION_LAYERS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


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


class MLP(nn.Module):
    """784 -> hidden[0] -> ... -> hidden[-1] -> 10, returning logits.

    Each hidden layer is Linear, the activation, and Dropout when `dropout` > 0.
    """

    def __init__(
        self,
        hidden: Sequence[int] = (256, 128),
        activation: str = "relu",
        dropout: float = 0.0,
        n_inputs: int = 28 * 28,
        n_classes: int = 10,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATION_LAYERS:
            raise ValueError(f"activation={activation!r}; expected one of {', '.join(ACTIVATION_LAYERS)}")
        layers: list[nn.Module] = []
        width = n_inputs
        for out in (int(w) for w in hidden):
            layers += [nn.Linear(width, out), ACTIVATION_LAYERS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = out
        layers.append(nn.Linear(width, n_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
