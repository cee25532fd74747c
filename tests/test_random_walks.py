"""refnet.tasks.random_walks: the two readings of σ, the split, and the step-variance baseline."""
import numpy as np
import pytest

from refnet.tasks.random_walks import (random_walk_task, random_walks, step_std, step_variance,
                                       step_variance_baseline)


@pytest.mark.parametrize("reading, stds", [("variance", (0.1 ** 0.5, 1.0)), ("std", (0.1, 1.0))])
def test_each_reading_gives_its_step_standard_deviations(reading, stds):
    x, y = random_walks(4000, T=50, reading=reading, seed=0)
    steps = np.diff(x, axis=0, prepend=0.0)
    for label, std in enumerate(stds):
        measured = steps[:, y == label].std()
        # 4000 walks × 50 steps × 2 coordinates: the sample std is within 1% of the truth (≈ 9 standard errors).
        assert measured == pytest.approx(std, rel=1e-2)


def test_walks_start_at_zero_shapes_and_balanced_labels():
    x, y = random_walks(30, T=7, seed=1)
    assert x.shape == (7, 60, 2) and y.dtype == np.int64 and y.sum() == 30
    steps = np.diff(np.concatenate([np.zeros((1, 60, 2)), x]), axis=0)
    np.testing.assert_allclose(np.cumsum(steps, axis=0), x, atol=1e-12)   # X_t = X_{t−1} + step


def test_the_split_is_half_and_half_and_seeded():
    a, b = random_walk_task(100, T=5, seed=3), random_walk_task(100, T=5, seed=3)
    assert a.x_train.shape == (5, 100, 2) and a.x_test.shape == (5, 100, 2)
    assert a.y_train.sum() == 50 and a.y_test.sum() == 50
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.x_train, a.x_test)


def test_step_variance_is_the_mean_squared_step():
    x = np.array([[[1.0, 0.0]], [[1.0, 2.0]]])          # steps (1, 0) then (0, 2)
    np.testing.assert_allclose(step_variance(x), [(1.0 + 4.0) / 4])


@pytest.mark.parametrize("reading", ["variance", "std"])
def test_thresholding_the_step_variance_separates_the_classes(reading):
    # With 100 steps the two step variances (0.1 vs 1, or 0.01 vs 1) do not overlap in practice.
    task = random_walk_task(1000, reading=reading, seed=2)
    accuracy, threshold = step_variance_baseline(task.x_train, task.y_train, task.x_test, task.y_test)
    assert accuracy >= 0.999 and task.step_stds[0] ** 2 < threshold < 1.0


@pytest.mark.parametrize("kwargs, error, match", [
    ({"reading": "sd"}, ValueError, r"reading must be one of \('variance', 'std'\), got 'sd'"),
    ({"T": 0}, ValueError, "T must be an int >= 1, got 0"),
    ({"sigmas": (0.0, 1.0)}, ValueError, r"sigmas\[0\] must be a finite number in \(0.0, inf\], got 0.0"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        random_walks(3, **kwargs)


def test_step_std_refuses_an_unknown_reading():
    with pytest.raises(ValueError, match="reading must be one of"):
        step_std(0.1, "var")
