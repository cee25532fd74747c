"""refnet.tasks.mnist: IDX files from a folder, tested on small files the test writes."""
import gzip

import numpy as np
import pytest

from refnet.tasks.mnist import FILES, mnist, read_idx, write_idx


def _write_tiny_mnist(folder, gz=False):
    r = np.random.default_rng(0)
    arrays = {"x_train": r.integers(0, 256, (5, 4, 4)), "y_train": r.integers(0, 10, 5),
              "x_test": r.integers(0, 256, (3, 4, 4)), "y_test": r.integers(0, 10, 3)}
    for key, name in FILES.items():
        write_idx(folder / name, arrays[key])
        if gz:
            data = (folder / name).read_bytes()
            (folder / name).unlink()
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
    return arrays


def test_read_idx_returns_what_write_idx_wrote(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a", a)
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), a)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_a_folder_as_pixel_sequences_scaled_to_unit_range(tmp_path, gz):
    arrays = _write_tiny_mnist(tmp_path, gz)
    split = mnist(tmp_path)
    assert split.x_train.shape == (16, 5, 1) and split.x_test.shape == (16, 3, 1)
    np.testing.assert_allclose(split.x_train[:, 2, 0], arrays["x_train"][2].reshape(-1) / 255.0, rtol=1e-15)
    np.testing.assert_array_equal(split.y_test, arrays["y_test"])


def test_mnist_rows_are_one_image_row_per_step(tmp_path):
    arrays = _write_tiny_mnist(tmp_path)
    split = mnist(tmp_path, rows=True)
    assert split.x_train.shape == (4, 5, 4)
    np.testing.assert_allclose(split.x_train[1, 0], arrays["x_train"][0, 1] / 255.0, rtol=1e-15)


def test_read_idx_rejects_a_file_that_is_not_idx(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="must start with an IDX header"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "short", np.zeros((2, 2)))
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"must hold 16 bytes for shape \(2, 2\)"):
        read_idx(tmp_path / "short")


def test_mnist_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="must hold train-images-idx3-ubyte or train-images-idx3-ubyte.gz"):
        mnist(tmp_path)
