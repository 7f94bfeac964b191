"""MNIST digits from IDX files (the repository's bundled sample, or the full set) as a DataModule."""

from __future__ import annotations

import gzip
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not) as an array: a big-endian header, then unsigned bytes."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    dims = raw[3]
    shape = np.frombuffer(raw, dtype=">u4", count=dims, offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


class MNISTDataModule(pl.LightningDataModule):
    """The first `train_size` training digits and `val_size` test digits, scaled to [0, 1]."""

    def __init__(self, data_dir: str, batch_size: int = 64, train_size: int = 4000, val_size: int = 1000):
        super().__init__()
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.train_size, self.val_size = train_size, val_size

    def setup(self, stage: str | None = None) -> None:
        self.train = self._split("train", self.train_size)
        self.val = self._split("t10k", self.val_size)

    def _split(self, prefix: str, size: int) -> TensorDataset:
        files = {kind: self._file(f"{prefix}-{kind}") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")}
        images = torch.from_numpy(read_idx(files["images-idx3-ubyte"])[:size].copy()).float() / 255
        labels = torch.from_numpy(read_idx(files["labels-idx1-ubyte"])[:size].astype(np.int64))
        return TensorDataset(images.flatten(1), labels)

    def _file(self, stem: str) -> Path:
        for name in (f"{stem}.gz", stem):
            if (self.data_dir / name).is_file():
                return self.data_dir / name
        raise FileNotFoundError(f"data.data_dir={self.data_dir}: no {stem}[.gz]; expected MNIST's IDX files")

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=256)
