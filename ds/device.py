"""The `device` setting, resolved to a torch device this machine has.

ds/config.py checks the spelling without torch; this checks that the device
exists, right after torch loads and before any data does, so that `cuda` on a
machine without CUDA is one clear error instead of a traceback mid-run.
"""

from __future__ import annotations

import torch

from ds.errors import DeviceError


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when available, else the CPU (never MPS: ask for it by name)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            build = (
                "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            )
            raise DeviceError(
                f"device={name!r}: CUDA is not available on this machine "
                f"(torch {torch.__version__}, {build}); "
                "expected device=cpu, or device=auto to use CUDA only where it is available"
            )
        count = torch.cuda.device_count()
        index = int(name.partition(":")[2] or 0)
        if index >= count:
            raise DeviceError(
                f"device={name!r}: this machine has {count} CUDA device{'s' if count != 1 else ''} "
                f"(cuda:0 to cuda:{count - 1}); expected one of them, or device=cuda for the first"
            )
    if name == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(
            f"device={name!r}: Apple's MPS is not available on this machine; "
            "expected device=cpu or device=auto"
        )
    return torch.device(name)
