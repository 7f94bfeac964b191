from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ds.data import (
    MNIST,
    MNIST_SAMPLE,
    DatasetError,
    DatasetIdentity,
    DatasetIntegrityError,
    DatasetUnavailableError,
    SampleFallbackWarning,
    clear_memory_cache,
    content_hash,
    iterate_batches,
    load_mnist,
    normalise_images,
)
from ds.idx import read_mnist_pair
from tests.cli import ROOT


@pytest.fixture(autouse=True)
def _fresh_memory_cache():
    clear_memory_cache()
    yield
    clear_memory_cache()


@pytest.fixture
def sample_copy(tmp_path: Path, sample_dir: Path) -> Path:
    """A private copy of the sample that a test may modify."""
    return Path(shutil.copytree(sample_dir, tmp_path / "sample"))


def _snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.lstat().st_size, p.lstat().st_mtime_ns) for p in directory.iterdir()}


# --- the bundled sample -------------------------------------------------------


@pytest.mark.slow
def test_the_arrays_and_their_identity_load_without_torch(sample_dir: Path, tmp_path: Path) -> None:
    """What a sweep's own process needs, the dataset's identity, costs no torch import (a second)."""
    code = (
        "import sys; from ds.data import load_arrays, load_mnist\n"
        f"arrays = load_arrays({str(sample_dir)!r}, {str(tmp_path)!r})\n"
        "print(arrays.identity.name, arrays.train_x.shape, 'torch' in sys.modules)\n"
        f"print(load_mnist({str(sample_dir)!r}, {str(tmp_path)!r}).identity == arrays.identity)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["mnist-sample (8000, 784) False", "True"]


def test_sample_loads_normalised(sample_dir: Path) -> None:
    before = _snapshot(sample_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_mnist(sample_dir, download=False, spec=MNIST_SAMPLE)
    assert data.identity == DatasetIdentity(
        "mnist-sample", 8000, 2000, content_hash([r.sha256 for r in MNIST_SAMPLE.resources()])
    )
    assert str(data.identity) == f"mnist-sample(8000/2000, sha256:{data.identity.sha256[:8]})"
    assert data.identity.short() == str(data.identity)
    assert data.train_images.shape == (8000, 784) and data.train_images.dtype == torch.uint8
    assert data.test_x.shape == (2000, 784) and data.test_x.dtype == torch.float32
    assert data.train_y.shape == (8000,) and data.train_y.dtype == torch.int64
    assert data.test_y.shape == (2000,) and data.test_y.dtype == torch.int64
    train_x = torch.cat(
        [bx for bx, _ in iterate_batches(data.train_images, data.train_y, 1000, torch.Generator())]
    )
    assert train_x.dtype == torch.float32
    assert abs(train_x.mean().item()) < 0.05 and abs(train_x.std().item() - 1) < 0.05
    assert set(data.train_y.tolist()) == set(range(10)) == set(data.test_y.tolist())
    assert _snapshot(sample_dir) == before  # nothing written next to the data


def test_the_sample_s_folder_as_data_dir_chooses_the_sample(sample_dir: Path, monkeypatch) -> None:
    """`paths.data=data/sample`: the sample, chosen; no download tried, no fallback warned about."""
    monkeypatch.setenv("HOME", str(sample_dir.parent))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for spelled in (sample_dir, "~/sample"):
            data = load_mnist(spelled, download=True, mirrors=["http://127.0.0.1:1/"], timeout_s=1)
            assert data.identity.name == "mnist-sample" and len(data.train_y) == 8000


def test_normalisation_matches_formula(sample_dir: Path) -> None:
    data = load_mnist(sample_dir, download=False, spec=MNIST_SAMPLE)
    images, labels = read_mnist_pair(
        sample_dir / "t10k-images-idx3-ubyte.gz", sample_dir / "t10k-labels-idx1-ubyte.gz"
    )
    expected = (images.reshape(-1, 784).astype(np.float64) / 255 - 0.1307) / 0.3081
    np.testing.assert_allclose(data.test_x.numpy(), expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(data.test_y.numpy(), labels)


def test_split_rule_keeps_class_major_order(sample_dir: Path) -> None:
    arrays = load_mnist(sample_dir, download=False, spec=MNIST_SAMPLE).arrays
    # Class-major order survives the split: labels are sorted in both parts,
    # and every digit is split 4:1 (rounded by position).
    for labels in (arrays.train_y, arrays.test_y):
        assert np.all(np.diff(labels.astype(int)) >= 0)
    counts = np.bincount(arrays.train_y, minlength=10) + np.bincount(arrays.test_y, minlength=10)
    assert counts.sum() == 10_000
    assert np.all(np.abs(np.bincount(arrays.test_y, minlength=10) - counts / 5) <= 1)


def test_uncompressed_files_are_found(tmp_path: Path, sample_dir: Path) -> None:
    for resource in MNIST_SAMPLE.resources():
        raw = gzip.decompress((sample_dir / resource.filename).read_bytes())
        (tmp_path / resource.filename.removesuffix(".gz")).write_bytes(raw)
    data = load_mnist(tmp_path, download=False, spec=MNIST_SAMPLE)
    assert data.identity == load_mnist(sample_dir, download=False, spec=MNIST_SAMPLE).identity


# --- in-memory cache ----------------------------------------------------------


def test_memory_cache_returns_the_same_object(sample_dir: Path) -> None:
    first = load_mnist(sample_dir, download=False, spec=MNIST_SAMPLE)
    second = load_mnist(sample_dir, download=False, spec=MNIST_SAMPLE)
    assert second is first
    arrays = load_mnist(sample_dir, download=False, spec=MNIST_SAMPLE).arrays
    assert arrays is load_mnist(sample_dir, download=False, spec=MNIST_SAMPLE).arrays
    assert not arrays.train_x.flags.writeable  # shared, so protected from edits


def test_memory_cache_notices_changed_file(sample_copy: Path) -> None:
    first = load_mnist(sample_copy, download=False, spec=MNIST_SAMPLE).arrays
    path = sample_copy / MNIST_SAMPLE.test_labels.filename
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    second = load_mnist(sample_copy, download=False, spec=MNIST_SAMPLE).arrays
    assert second is not first and second.identity == first.identity
    # A changed file is verified again, so damage is caught.
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (0).to_bytes(4, "big")))
    with pytest.raises(DatasetIntegrityError, match=str(path)):
        load_mnist(sample_copy, download=False, spec=MNIST_SAMPLE)


# --- disk cache -----------------------------------------------------------------


def test_disk_cache_round_trip_equals_cold_parse(tmp_path: Path, sample_dir: Path) -> None:
    cache = tmp_path / "cache"
    cold = load_mnist(sample_dir, download=False, spec=MNIST_SAMPLE).arrays
    clear_memory_cache()
    written = load_mnist(sample_dir, cache, download=False, spec=MNIST_SAMPLE).arrays
    entries = list(cache.iterdir())
    assert len(entries) == 1 and entries[0].name.startswith("mnist-sample-")
    assert stat.S_IMODE(entries[0].stat().st_mode) == 0o755  # a shared cache serves every user
    clear_memory_cache()
    from_disk = load_mnist(sample_dir, cache, download=False, spec=MNIST_SAMPLE).arrays
    assert isinstance(from_disk.train_x, np.memmap)  # really read from the cache
    for got in (written, from_disk):
        assert got.identity == cold.identity
        for name in ("train_x", "train_y", "test_x", "test_y"):
            np.testing.assert_array_equal(getattr(got, name), getattr(cold, name))
    assert list(cache.iterdir()) == entries  # no temp directories left


def _corrupt_truncate(entry: Path) -> None:
    path = entry / "train_x.npy"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _corrupt_meta(entry: Path) -> None:
    (entry / "meta.json").write_text("{not json")


def _corrupt_shape(entry: Path) -> None:
    np.save(entry / "test_y.npy", np.zeros(3, dtype=np.uint8))


def _corrupt_missing(entry: Path) -> None:
    (entry / "train_y.npy").unlink()


def _corrupt_identity(entry: Path) -> None:
    meta = json.loads((entry / "meta.json").read_text())
    meta["identity"]["name"] = "mnist"
    (entry / "meta.json").write_text(json.dumps(meta))


def _corrupt_replace_by_file(entry: Path) -> None:
    shutil.rmtree(entry)
    entry.write_text("not a directory")


def loaded_again_after(change, tmp_path: Path, sample_dir: Path, caplog):
    """The sample loaded into a fresh disk cache, its entry changed by `change`, and loaded again:
    both loads, and the cache folder."""
    cache = tmp_path / "cache"
    cold = load_mnist(sample_dir, cache, download=False, spec=MNIST_SAMPLE).arrays
    (entry,) = cache.iterdir()
    change(entry)
    clear_memory_cache()
    caplog.set_level(logging.WARNING, logger="ds.data")
    return cold, load_mnist(sample_dir, cache, download=False, spec=MNIST_SAMPLE).arrays, cache


@pytest.mark.parametrize(
    "corrupt",
    [
        _corrupt_truncate,
        _corrupt_meta,
        _corrupt_identity,
        _corrupt_shape,
        _corrupt_missing,
        _corrupt_replace_by_file,
    ],
)
def test_corrupt_disk_cache_entry_is_rebuilt(tmp_path: Path, sample_dir: Path, caplog, corrupt) -> None:
    cold, rebuilt, cache = loaded_again_after(corrupt, tmp_path, sample_dir, caplog)
    (entry,) = cache.iterdir()
    assert rebuilt.identity == cold.identity
    np.testing.assert_array_equal(rebuilt.train_x, cold.train_x)
    np.testing.assert_array_equal(rebuilt.test_y, cold.test_y)
    assert any("ignoring cache entry" in r.getMessage() for r in caplog.records)
    # The entry was rewritten and now loads cleanly from disk.
    caplog.clear()
    clear_memory_cache()
    again = load_mnist(sample_dir, cache, download=False, spec=MNIST_SAMPLE).arrays
    assert isinstance(again.train_x, np.memmap)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [p.name for p in cache.iterdir()] == [entry.name]


def _rewrite(entry: Path, name: str, change) -> np.ndarray:
    """Save `name`.npy changed by `change` (a function of a writable copy), as an editor would."""
    array = np.load(entry / f"{name}.npy").copy()
    change(array)
    np.save(entry / f"{name}.npy", array)
    return array


def _record_hash(entry: Path, name: str, array: np.ndarray) -> None:
    """Make meta.json agree with the edited array: only the label range check is left to catch it."""
    meta = json.loads((entry / "meta.json").read_text())
    meta["sha256"][name] = hashlib.sha256(array.tobytes()).hexdigest()
    (entry / "meta.json").write_text(json.dumps(meta))


def _shift_labels(entry: Path) -> None:
    _rewrite(entry, "train_y", lambda y: y.__setitem__(slice(None), np.roll(y, 1)))


def _change_pixels(entry: Path) -> None:
    _rewrite(entry, "test_x", lambda x: x.__setitem__((0, slice(300, 310)), 255 - x[0, 300:310]))


def _label_out_of_range(entry: Path) -> None:
    _record_hash(entry, "test_y", _rewrite(entry, "test_y", lambda y: y.__setitem__(5, 255)))


@pytest.mark.parametrize(
    ("alter", "reason"),
    [
        (_shift_labels, "train_y.npy was altered since it was written"),
        (_change_pixels, "test_x.npy was altered since it was written"),
        (_label_out_of_range, "test_y.npy holds label 255, expected labels 0..9"),
    ],
)
def test_an_altered_cache_entry_is_detected_and_rebuilt(
    tmp_path: Path, sample_dir: Path, caplog, alter, reason
) -> None:
    """Arrays that still load but no longer hold the verified data are never trained on."""
    cold, rebuilt, cache = loaded_again_after(alter, tmp_path, sample_dir, caplog)

    warnings_logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert (
        len(warnings_logged) == 1 and reason in warnings_logged[0] and "rebuilding it" in warnings_logged[0]
    )
    for name in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(rebuilt, name), getattr(cold, name))
    caplog.clear()
    clear_memory_cache()
    again = load_mnist(
        sample_dir, cache, download=False, spec=MNIST_SAMPLE
    ).arrays  # the rebuilt entry is clean
    assert isinstance(again.train_y, np.memmap) and not caplog.records
    np.testing.assert_array_equal(again.train_y, cold.train_y)


def test_unwritable_cache_dir_is_not_fatal(tmp_path: Path, sample_dir: Path, caplog) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache directory should be")
    caplog.set_level(logging.WARNING, logger="ds.data")
    data = load_mnist(sample_dir, blocker, download=False, spec=MNIST_SAMPLE)
    assert data.identity.name == "mnist-sample"
    assert any("could not write cache entry" in r.getMessage() for r in caplog.records)


# --- resolution and errors ------------------------------------------------------


def test_missing_files_without_download_fall_back_loudly(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="ds.data")
    with pytest.warns(SampleFallbackWarning) as record:
        data = load_mnist(tmp_path / "nowhere", download=False)
    assert data.identity.name == "mnist-sample"
    message = str(record[0].message)
    for fragment in (
        str(tmp_path / "nowhere"),
        "downloading is disabled",
        "paths.data",
        "DS_DATA_DIR",
        "NOT comparable",
    ):
        assert fragment in message, message
    [line] = [r.getMessage() for r in caplog.records if "FALLING BACK" in r.getMessage()]
    assert len(line) < 200 and "NOT comparable" in line and "downloading is disabled" in line, line
    assert not (tmp_path / "nowhere").exists()


def test_missing_files_without_fallback_raise(tmp_path: Path) -> None:
    (tmp_path / MNIST.train_images.filename).write_bytes(b"")  # present files don't count as missing
    with pytest.raises(DatasetUnavailableError) as info:
        load_mnist(tmp_path, download=False, sample_fallback=False)
    message = str(info.value)
    assert "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz" in message
    assert "train-images-idx3-ubyte.gz," not in message
    for fragment in (str(tmp_path), "downloading is disabled", "fallback is disabled", "DS_DATA_DIR"):
        assert fragment in message, message


def test_data_dir_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "mnist"
    not_a_dir.write_text("")
    with pytest.raises(DatasetError, match=f"{not_a_dir} exists but is not a directory"):
        load_mnist(not_a_dir)


@pytest.mark.parametrize("damage", ["deleted", "dangling symlink"])
def test_a_sample_missing_a_file_is_an_error_naming_it(
    tmp_path: Path, sample_copy: Path, damage: str
) -> None:
    """Chosen (paths.data is the sample) or fallen back to: one error naming the file, no fallback
    warning first, no download into the sample's folder."""
    missing = sample_copy / MNIST_SAMPLE.test_labels.filename
    missing.unlink()
    if damage == "dangling symlink":
        missing.symlink_to(tmp_path / "gone.gz")
    before = _snapshot(sample_copy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DatasetUnavailableError) as chosen:
            offline = {"mirrors": ["http://127.0.0.1:1/"], "timeout_s": 1}
            load_mnist(sample_copy, download=True, **offline, sample_dir=sample_copy)
        with pytest.raises(DatasetUnavailableError) as fallen_back:
            load_mnist(tmp_path / "nowhere", download=False, sample_dir=sample_copy)

    expected = f"the bundled sample in {sample_copy} is missing {missing.name}"
    if damage == "dangling symlink":
        expected += f" (a symlink to {tmp_path / 'gone.gz'}, which does not exist)"
    assert str(chosen.value).startswith(f"paths.data={sample_copy}: {expected}. Restore it")
    fell_back = (
        f"downloading is disabled). Falling back to the bundled sample failed too: {expected}. Restore it"
    )
    assert fell_back in str(fallen_back.value)
    assert _snapshot(sample_copy) == before


def test_checksum_mismatch_names_file_and_hashes(sample_copy: Path) -> None:
    with pytest.raises(DatasetIntegrityError) as info:
        load_mnist(sample_copy, download=False)  # the sample is not the full set
    message = str(info.value)
    path = sample_copy / MNIST.train_images.filename
    for fragment in (str(path), MNIST.train_images.sha256, MNIST_SAMPLE.train_images.sha256, "mnist-sample"):
        assert fragment in message, message


def test_checksum_mismatch_of_unknown_content_says_what_to_do(sample_copy: Path) -> None:
    path = sample_copy / MNIST_SAMPLE.test_labels.filename
    labels = bytearray(gzip.decompress(path.read_bytes()))
    labels[-1] = (labels[-1] + 1) % 10  # still a well-formed labels file
    path.write_bytes(gzip.compress(bytes(labels)))
    with pytest.raises(DatasetIntegrityError) as info:
        load_mnist(sample_copy, download=False, spec=MNIST_SAMPLE)
    message = str(info.value)
    for fragment in (str(path), MNIST_SAMPLE.test_labels.sha256, "damaged", "delete it"):
        assert fragment in message, message


def test_damaged_file_in_data_dir_is_an_integrity_error(sample_copy: Path) -> None:
    path = sample_copy / MNIST_SAMPLE.test_images.filename
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DatasetIntegrityError) as info:
        load_mnist(sample_copy, download=False, spec=MNIST_SAMPLE)
    message = str(info.value)
    assert str(path) in message and "not a valid gzip stream" in message and "Delete it" in message


# --- batching -------------------------------------------------------------------


def test_iterate_batches_covers_each_index_once_and_is_deterministic() -> None:
    n, batch_size = 103, 10
    x = torch.arange(n, dtype=torch.uint8).unsqueeze(1).repeat(1, 3)
    y = torch.arange(n)

    def epoch(generator: torch.Generator) -> list[torch.Tensor]:
        batches = list(iterate_batches(x, y, batch_size, generator))
        for bx, by in batches:
            assert torch.allclose(bx[:, 0], normalise_images(by.to(torch.uint8)))  # rows stay paired
        return [by for _, by in batches]

    generator = torch.Generator().manual_seed(7)
    first, second = epoch(generator), epoch(generator)
    assert [len(b) for b in first] == [10] * 10 + [3]
    for batches in (first, second):
        assert sorted(torch.cat(batches).tolist()) == list(range(n))
    assert not torch.equal(torch.cat(first), torch.cat(second))  # reshuffled per epoch
    replay = torch.Generator().manual_seed(7)
    assert all(torch.equal(a, b) for a, b in zip(first + second, epoch(replay) + epoch(replay), strict=False))


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_iterate_batches_rejects_bad_batch_size(batch_size) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        next(
            iterate_batches(
                torch.zeros(4, 2, dtype=torch.uint8), torch.zeros(4), batch_size, torch.Generator()
            )
        )


def test_iterate_batches_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="x has 4 rows but y has 3"):
        next(iterate_batches(torch.zeros(4, 2, dtype=torch.uint8), torch.zeros(3), 2, torch.Generator()))


# --- the full set (only where ../shared/data/mnist exists) ----------------------


def test_full_set_loads_as_mnist(shared_mnist_dir: Path, tmp_path: Path) -> None:
    before = _snapshot(shared_mnist_dir)
    cache = tmp_path / "cache"
    data = load_mnist(shared_mnist_dir, cache, download=False, sample_fallback=False)
    assert data.identity == DatasetIdentity(
        "mnist", 60000, 10000, content_hash([r.sha256 for r in MNIST.resources()])
    )
    assert data.train_images.shape == (60000, 784) and data.test_x.shape == (10000, 784)
    train_x = normalise_images(data.train_images)
    assert abs(train_x.mean().item()) < 1e-3 and abs(train_x.std().item() - 1) < 1e-3
    clear_memory_cache()
    again = load_mnist(shared_mnist_dir, cache, download=False, sample_fallback=False)
    assert torch.equal(again.train_images, data.train_images) and torch.equal(again.test_y, data.test_y)
    assert _snapshot(shared_mnist_dir) == before  # the read-only data dir is never written


def test_sample_is_first_10000_training_digits_regrouped(shared_mnist_dir: Path, sample_dir: Path) -> None:
    images, labels = read_mnist_pair(
        shared_mnist_dir / "train-images-idx3-ubyte.gz", shared_mnist_dir / "train-labels-idx1-ubyte.gz"
    )
    order = np.argsort(labels[:10_000], kind="stable")  # class-major, original order within a class
    images, labels = images[:10_000][order].reshape(-1, 784), labels[:10_000][order]
    is_test = np.arange(10_000) % 5 == 4
    sample = load_mnist(sample_dir, download=False, spec=MNIST_SAMPLE).arrays
    np.testing.assert_array_equal(sample.train_x, images[~is_test])
    np.testing.assert_array_equal(sample.train_y, labels[~is_test])
    np.testing.assert_array_equal(sample.test_x, images[is_test])
    np.testing.assert_array_equal(sample.test_y, labels[is_test])
