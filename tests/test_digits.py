"""refnet.tasks.digits: scikit-learn's 8×8 digits as pixel or row sequences."""
import numpy as np
import pytest

pytest.importorskip("sklearn")

from refnet.tasks.digits import digits, to_sequences  # noqa: E402


def test_digits_are_64_pixel_steps_in_unit_range_with_a_disjoint_split():
    split = digits(seed=0)
    assert split.x_train.shape == (64, 1348, 1) and split.x_test.shape == (64, 449, 1)
    assert split.x_train.min() == 0.0 and split.x_train.max() == 1.0
    assert split.y_train.dtype == np.int64 and set(np.unique(split.y_test)) == set(range(10))


def test_digits_rows_are_8_steps_of_8_pixels_of_the_same_images():
    pixels, rows = digits(seed=1), digits(rows=True, seed=1)
    assert rows.x_train.shape == (8, 1348, 8)
    np.testing.assert_array_equal(rows.x_train.transpose(1, 0, 2).reshape(1348, 64),
                                  pixels.x_train[:, :, 0].T)


def test_to_sequences_reads_images_row_major():
    images = np.arange(8.0).reshape(2, 2, 2)
    np.testing.assert_array_equal(to_sequences(images, 1)[:, 1, 0], [4, 5, 6, 7])
    with pytest.raises(ValueError, match="pixels_per_step must divide the 4 pixels of an image, got 3"):
        to_sequences(images, 3)


def test_digits_rejects_a_bad_test_fraction():
    with pytest.raises(ValueError, match="test_fraction must be a number in \\(0, 1\\), got 1.5"):
        digits(test_fraction=1.5)
