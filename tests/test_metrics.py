"""Summary numbers: reconstruction error, effective rank, largest norms, learned components."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SHAPES, brute_force_cp, random_factors

from tflib.metrics import (
    count_jumps,
    effective_rank,
    largest_component_norms,
    learned_components,
    normalized_reconstruction_error,
    rise_steps,
)


def random_orthogonal(n: int, seed: int) -> torch.Tensor:
    matrix = torch.randn(n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return torch.linalg.qr(matrix).Q


def numpy_effective_rank(values: np.ndarray) -> float:
    p = values[values > 0] / values.sum()
    return float(np.exp(-np.sum(p * np.log(p))))


# --- normalized_reconstruction_error --------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_normalized_error_matches_numpy(shape):
    generator = torch.Generator().manual_seed(0)
    tensor = torch.randn(shape, dtype=torch.float64, generator=generator)
    target = torch.randn(shape, dtype=torch.float64, generator=generator)
    expected = np.linalg.norm((tensor - target).numpy().ravel()) / np.linalg.norm(
        target.numpy().ravel()
    )
    assert normalized_reconstruction_error(tensor, target) == pytest.approx(expected, rel=1e-12)


def test_normalized_error_of_the_target_itself_is_zero():
    target = torch.randn(3, 4)
    assert normalized_reconstruction_error(target.clone(), target) == 0.0


def test_normalized_error_of_zero_is_one():
    target = torch.randn(3, 4, 5)
    assert normalized_reconstruction_error(torch.zeros_like(target), target) == pytest.approx(1.0)


def test_normalized_error_returns_a_python_float():
    assert type(normalized_reconstruction_error(torch.ones(2), torch.ones(2) * 2)) is float


def test_normalized_error_rejects_mismatched_shapes():
    with pytest.raises(
        ValueError, match=r"tensor has shape \(3, 4\) but target has shape \(4, 3\)"
    ):
        normalized_reconstruction_error(torch.ones(3, 4), torch.ones(4, 3))


def test_normalized_error_rejects_a_zero_target():
    with pytest.raises(ValueError, match="target is zero"):
        normalized_reconstruction_error(torch.ones(3, 4), torch.zeros(3, 4))


# --- effective_rank -------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_effective_rank_of_k_equal_singular_values_is_k(k):
    n = 6
    singular = torch.zeros(n, dtype=torch.float64)
    singular[:k] = 2.5
    matrix = random_orthogonal(n, 1) @ torch.diag(singular) @ random_orthogonal(n, 2).T
    assert effective_rank(matrix) == pytest.approx(k, rel=1e-9)


@pytest.mark.parametrize("position", [0, 3])
def test_effective_rank_of_a_diagonal_with_one_nonzero_is_one(position):
    diagonal = torch.zeros(5)
    diagonal[position] = -3.0
    assert effective_rank(torch.diag(diagonal)) == pytest.approx(1.0, rel=1e-12)


def test_effective_rank_of_a_rectangular_matrix_matches_numpy():
    matrix = torch.randn(4, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    expected = numpy_effective_rank(np.linalg.svd(matrix.numpy(), compute_uv=False))
    assert effective_rank(matrix) == pytest.approx(expected, rel=1e-10)
    assert 1 < effective_rank(matrix) < 4


@pytest.mark.parametrize(
    ("values", "expected"), [([1.0, 1.0, 1.0, 0.0], 3.0), ([2.0, 2.0], 2.0), ([0.0, 7.0], 1.0)]
)
def test_effective_rank_of_a_vector_counts_equal_values(values, expected):
    assert effective_rank(torch.tensor(values)) == pytest.approx(expected, rel=1e-12)


def test_effective_rank_of_a_vector_matches_numpy():
    values = np.array([3.0, 1.0, 0.5, 0.0, 0.25])
    expected = numpy_effective_rank(values)
    assert effective_rank(torch.tensor(values)) == pytest.approx(expected, rel=1e-12)


def test_effective_rank_of_zero_is_zero():
    assert effective_rank(torch.zeros(3, 3)) == 0.0
    assert effective_rank(torch.zeros(4)) == 0.0


def test_effective_rank_rejects_a_negative_vector():
    with pytest.raises(ValueError, match="non-negative"):
        effective_rank(torch.tensor([1.0, -0.5]))


@pytest.mark.parametrize("shape", [(2, 3, 4), (), (2, 2, 2, 2)])
def test_effective_rank_rejects_other_orders(shape):
    with pytest.raises(ValueError, match="effective_rank takes a matrix or a vector, got shape"):
        effective_rank(torch.ones(shape))


# --- component norms over time --------------------------------------------------------------------


@pytest.mark.parametrize(("rank", "k"), [(6, 3), (4, 10), (5, 5)])
def test_largest_component_norms_are_the_top_k_in_decreasing_order(rank, k):
    factors = random_factors((2, 3, 4), rank, seed=4)
    norms = [
        np.linalg.norm(brute_force_cp([f[:, r : r + 1] for f in factors])) for r in range(rank)
    ]
    expected = sorted(norms, reverse=True)[:k]
    np.testing.assert_allclose(largest_component_norms(factors, k).numpy(), expected, rtol=1e-12)


def test_learned_components_counts_norms_above_threshold_per_step():
    norms = np.array([[0.1, 0.0, 0.0], [0.6, 0.1, 0.0], [0.9, 0.5, 0.2], [1.0, 0.9, 0.8]])
    assert learned_components(norms, 0.5).tolist() == [0, 1, 1, 3]


def test_count_jumps_of_components_learned_one_at_a_time():
    norms = np.array(
        [[0.0, 0.0, 0.0], [0.9, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.8, 0.0], [1.0, 0.9, 0.7]]
    )
    assert count_jumps(norms, 0.5) == [1, 1, 1]


def test_count_jumps_of_two_components_learned_at_once():
    norms = np.array([[0.0, 0.0, 0.0], [0.9, 0.8, 0.0], [1.0, 0.9, 0.0], [1.0, 0.9, 0.7]])
    assert count_jumps(norms, 0.5) == [2, 1]


def test_count_jumps_ignores_components_that_drop_back():
    norms = np.array([[0.0, 0.0], [0.9, 0.0], [0.2, 0.0], [0.9, 0.9]])
    assert count_jumps(norms, 0.5) == [1, 2]


def test_count_jumps_is_empty_when_nothing_is_learned():
    assert count_jumps(np.full((4, 3), 0.1), 0.5) == []


def test_rise_steps_are_the_first_records_past_5_and_90_percent_of_the_final_value():
    steps = [0, 10, 20, 30, 40]
    norms = np.array(
        [[0.01, 0.0, 0.0], [0.5, 0.0, 0.0], [1.0, 0.1, 0.0], [1.0, 2.0, 0.1], [1.0, 2.0, 0.2]]
    )
    starts, ends = rise_steps(steps, norms, 2)
    assert (starts, ends) == ([10, 30], [20, 30])  # 0.05 and 0.9 of 1.0, then of 2.0


def test_rise_steps_show_two_values_that_rise_together():
    norms = np.array([[0.0, 0.0], [0.5, 0.4], [1.0, 1.0]])
    starts, ends = rise_steps([0, 1, 2], norms, 2)
    assert not all(e < s for e, s in zip(ends, starts[1:])), "the second starts before one ends"
