"""The one-time costs of a process's first training run, paid on import.

A sweep's worker processes import this before their first trial
(conf/hydra/launcher/trials.yaml: `preload`), while the sweep still sets up,
so that trial 0 is not the slowest for reasons of its own: the training
modules (torch, TensorBoard), the fast path's kernel probe, and what a run's
end uses first (Pillow's drawing, torch.save).
"""

import io

import torch

import ds.run  # noqa: F401  (the training code: data, checkpoints, tracking)
from ds.step import fused_adam_kernel_works
from ds.tracking import confusion_image

fused_adam_kernel_works()
confusion_image(torch.zeros(2, 2, dtype=torch.long), epoch=0)
torch.save(torch.zeros(1), io.BytesIO())
