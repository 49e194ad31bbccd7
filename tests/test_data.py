"""Synthetic problems: low-rank targets, sampled entries, observations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from conftest import SHAPES, all_indices

from tflib.data import observe, random_cp_tensor, sample_entries


def unfoldings(tensor: np.ndarray) -> list[np.ndarray]:
    """Every mode-n matricization (mode n's index on the rows)."""
    return [np.moveaxis(tensor, n, 0).reshape(tensor.shape[n], -1) for n in range(tensor.ndim)]


# --- random_cp_tensor -----------------------------------------------------------------------------


@pytest.mark.parametrize("fro_norm", [1.0, 0.25, 37.0])
@pytest.mark.parametrize("shape", SHAPES)
def test_random_cp_tensor_has_the_requested_frobenius_norm(shape, fro_norm):
    tensor = random_cp_tensor(shape, 2, fro_norm, seed=0, dtype=torch.float64)
    assert tensor.shape == shape
    norm = math.sqrt(sum(float(x) ** 2 for x in tensor.reshape(-1)))
    assert norm == pytest.approx(fro_norm, rel=1e-12)


@pytest.mark.parametrize(
    ("shape", "rank"), [((6, 7), 1), ((6, 7), 3), ((5, 6, 7), 2), ((5, 6, 7), 4)]
)
def test_random_cp_tensor_has_cp_rank_at_most_r(shape, rank):
    tensor = random_cp_tensor(shape, rank, seed=1, dtype=torch.float64).numpy()
    for matrix in unfoldings(tensor):
        # a CP rank-r tensor has every matricization of rank <= r; with Gaussian factors, = r
        assert np.linalg.matrix_rank(matrix, tol=1e-10 * np.linalg.norm(matrix)) == rank


def test_random_cp_tensor_is_reproducible_per_seed():
    a = random_cp_tensor((3, 4, 5), 2, seed=7)
    b = random_cp_tensor((3, 4, 5), 2, seed=7)
    assert torch.equal(a, b)


def test_random_cp_tensor_differs_across_seeds():
    a = random_cp_tensor((3, 4, 5), 2, seed=7)
    b = random_cp_tensor((3, 4, 5), 2, seed=8)
    assert not torch.allclose(a, b)


def test_random_cp_tensor_without_seed_differs_between_calls():
    a = random_cp_tensor((3, 4, 5), 2)
    b = random_cp_tensor((3, 4, 5), 2)
    assert not torch.allclose(a, b)


def test_random_cp_tensor_seed_gives_the_same_tensor_in_every_dtype():
    a = random_cp_tensor((3, 4, 5), 2, seed=3, dtype=torch.float64)
    b = random_cp_tensor((3, 4, 5), 2, seed=3, dtype=torch.float32)
    assert b.dtype == torch.float32
    assert torch.equal(a.float(), b)


def test_random_cp_tensor_without_fro_norm_keeps_the_drawn_scale():
    # entries are sums of `rank` products of three standard normals: variance `rank`
    tensor = random_cp_tensor((20, 20, 20), 4, None, seed=0, dtype=torch.float64)
    assert float(tensor.var()) == pytest.approx(4.0, rel=0.15)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shape": (3, 0), "rank": 2}, "positive dimensions"),
        ({"shape": (), "rank": 2}, "positive dimensions"),
        ({"shape": (3, 4), "rank": 0}, "rank must be positive"),
        ({"shape": (3, 4), "rank": 2, "fro_norm": 0.0}, "fro_norm must be positive"),
        ({"shape": (3, 4), "rank": 2, "fro_norm": -1.0}, "fro_norm must be positive"),
    ],
)
def test_random_cp_tensor_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        random_cp_tensor(**kwargs)


# --- sample_entries -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_sample_entries_draws_distinct_in_range_indices(shape):
    n = math.prod(shape) // 2
    indices = sample_entries(shape, n, seed=0)
    assert indices.shape == (n, len(shape))
    assert indices.dtype == torch.int64
    rows = [tuple(row) for row in indices.tolist()]
    assert len(set(rows)) == n
    for row in rows:
        assert all(0 <= i < d for i, d in zip(row, shape))


@pytest.mark.parametrize("shape", SHAPES)
def test_sample_entries_of_every_entry_is_a_permutation(shape):
    indices = sample_entries(shape, math.prod(shape), seed=1)
    assert sorted(map(tuple, indices.tolist())) == list(
        itertools.product(*(range(d) for d in shape))
    )


def test_sample_entries_is_reproducible_per_seed():
    assert torch.equal(sample_entries((5, 6, 7), 40, seed=3), sample_entries((5, 6, 7), 40, seed=3))


def test_sample_entries_differs_across_seeds():
    assert not torch.equal(
        sample_entries((5, 6, 7), 40, seed=3), sample_entries((5, 6, 7), 40, seed=4)
    )


def test_sample_entries_covers_the_tensor_uniformly():
    counts = np.zeros((3, 4))
    for seed in range(300):
        for i, j in sample_entries((3, 4), 2, seed=seed).tolist():
            counts[i, j] += 1
    # 600 draws over 12 entries: 50 expected per entry, standard deviation about 7
    assert counts.min() > 25 and counts.max() < 75


def test_sample_entries_of_zero_entries_is_empty():
    assert sample_entries((3, 4), 0, seed=0).shape == (0, 2)


@pytest.mark.parametrize("n", [13, 100, -1])
def test_sample_entries_rejects_impossible_counts(n):
    with pytest.raises(ValueError, match=rf"cannot draw {n} distinct entries .* 12 entries"):
        sample_entries((3, 4), n, seed=0)


# --- observe --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_observe_reads_the_entries_at_the_indices(shape):
    tensor = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    indices = torch.cat([all_indices(shape), all_indices(shape)[:2]])
    expected = [float(tensor[tuple(row)]) for row in indices.tolist()]
    assert observe(tensor, indices).tolist() == expected


@pytest.mark.parametrize("indices_shape", [(5,), (5, 2), (5, 4)])
def test_observe_rejects_indices_of_the_wrong_shape(indices_shape):
    tensor = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="do not index a tensor of order 3"):
        observe(tensor, torch.zeros(indices_shape, dtype=torch.int64))
