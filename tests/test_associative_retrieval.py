"""refnet.tasks.associative_retrieval: the sequences of Ba et al. §4.1, their encoding and splits."""
import re

import numpy as np
import pytest

from refnet.tasks.associative_retrieval import (N_SYMBOLS, QUERY, SYMBOLS, associative_retrieval, decode,
                                                make_sequences, one_hot, overlap)


def _split(n=500, pairs=4, seed=0):
    return make_sequences(n, pairs, np.random.default_rng(seed))


@pytest.mark.parametrize("pairs", [1, 2, 4, 8])
def test_sequences_read_pairs_then_two_marks_then_a_key(pairs):
    pattern = re.compile(r"^(?:[a-z][0-9]){%d}\?\?[a-z]$" % pairs)
    assert all(pattern.match(s) for s in decode(_split(pairs=pairs).codes))


def test_keys_of_a_sequence_are_distinct_letters():
    for s in decode(_split(pairs=8).codes):
        keys = s[0:16:2]
        assert len(set(keys)) == 8


def test_target_is_the_digit_stored_under_the_query_key():
    split = _split()
    for s, target in zip(decode(split.codes), split.targets):
        pairs = dict(zip(s[0:8:2], s[1:8:2]))
        assert int(pairs[s[-1]]) == target


def test_paper_example_decodes_to_its_string():
    codes = np.array([[SYMBOLS.index(c) for c in "c9k8j3f1??c"]])
    assert decode(codes) == ["c9k8j3f1??c"]
    assert QUERY == 36 and N_SYMBOLS == 37


def test_one_hot_is_time_first_with_37_symbols():
    split = _split(n=6)
    x = one_hot(split.codes)
    assert x.shape == (11, 6, 37)
    np.testing.assert_array_equal(x.sum(axis=2), 1.0)
    np.testing.assert_array_equal(x.argmax(axis=2), split.codes.T)


def test_splits_have_the_requested_sizes_and_are_seeded():
    a = associative_retrieval(2, n_train=100, n_valid=20, n_test=30, seed=3)
    b = associative_retrieval(2, n_train=100, n_valid=20, n_test=30, seed=3)
    assert (len(a.train), len(a.valid), len(a.test)) == (100, 20, 30) and a.pairs == 2
    np.testing.assert_array_equal(a.test.codes, b.test.codes)
    c = associative_retrieval(2, n_train=100, n_valid=20, n_test=30, seed=4)
    assert not np.array_equal(a.train.codes, c.train.codes)


def test_default_splits_are_the_papers():
    data = associative_retrieval(n_train=10, n_valid=10, n_test=10)
    assert data.pairs == 4 and data.train.codes.shape == (10, 11)
    from inspect import signature
    defaults = signature(associative_retrieval).parameters
    assert (defaults["n_train"].default, defaults["n_valid"].default, defaults["n_test"].default) == \
        (100_000, 10_000, 20_000)


def test_targets_and_queries_are_close_to_uniform():
    split = _split(n=20_000)
    # 20 000 draws: each of 10 digits has frequency 0.1 ± 3σ, σ = √(0.1·0.9/20000) ≈ 0.0021.
    freq = np.bincount(split.targets, minlength=10) / len(split)
    assert np.abs(freq - 0.1).max() < 0.0065
    asked_position = (split.codes[:, :8:2] == split.codes[:, -1:]).argmax(axis=1)
    assert np.abs(np.bincount(asked_position, minlength=4) / len(split) - 0.25).max() < 0.0095


def test_overlap_counts_shared_sequences():
    split = _split(n=50)
    assert overlap(split, split) == 1.0
    assert overlap(split, _split(n=50, seed=1)) == 0.0


@pytest.mark.parametrize("pairs, error, match", [
    (0, ValueError, "pairs must be an int >= 1, got 0"),
    (27, ValueError, "pairs must be <= 26"),
    (2.0, TypeError, "pairs must be an int >= 1, got float"),
])
def test_bad_pairs_are_named(pairs, error, match):
    with pytest.raises(error, match=match):
        associative_retrieval(pairs, n_train=1, n_valid=1, n_test=1)


def test_bad_codes_are_named():
    with pytest.raises(ValueError, match=r"codes must be symbol indices in \[0, 37\)"):
        one_hot(np.array([[0, 37]]))
    with pytest.raises(TypeError, match="codes must be integer symbol indices"):
        one_hot(np.array([[0.0, 1.0]]))
