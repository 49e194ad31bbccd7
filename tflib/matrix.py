r"""Deep matrix factorization: a matrix :math:`W = W_L W_{L-1} \cdots W_1` with trainable factors.

Matrix completion with it is a linear neural network of depth L fit to observed entries; the
minimum-nuclear-norm completion is the convex baseline it is compared with.

Explained in the Matrix factorization chapter.
"""

from __future__ import annotations

import torch
from torch import nn

from tflib.checks import check_indices, check_number, check_same_device


class DeepMatrixFactorization(nn.Module):
    r"""The end-to-end matrix :math:`W = W_L \cdots W_1 \in \mathbb{R}^{d \times d'}`.

    Parameters
    ----------
    shape : (d, d'), the shape of the end-to-end matrix
    depth : number of factors L (1 is plain, un-factorized regression on the entries)
    width : inner dimension of the factors; defaults to min(d, d'), enough to express any matrix
    init_std : standard deviation of the i.i.d. normal factor entries at initialization
    seed, device, dtype : as for :class:`~tflib.CPFactorization`

    Attributes
    ----------
    factors : ``nn.ParameterList`` :math:`[W_1, \ldots, W_L]`; :math:`W_1` has shape
        (width, d'), :math:`W_L` shape (d, width), the others (width, width).

    Explained in the Matrix factorization chapter.
    """

    def __init__(
        self,
        shape: tuple[int, int],
        depth: int,
        init_std: float,
        *,
        width: int | None = None,
        seed: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"shape must be (rows, columns) with positive sizes, got {shape}")
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        check_number("init_std", init_std, low=0)
        rows, columns = (int(d) for d in shape)
        width = min(rows, columns) if width is None else width
        check_number("width", width, low=1, integer=True)
        self.shape = (rows, columns)
        dims = [columns] + [width] * (depth - 1) + [rows]
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.factors = nn.ParameterList(
            nn.Parameter(
                (
                    torch.randn(dims[i + 1], dims[i], generator=generator, dtype=torch.float64)
                    * init_std
                ).to(device=device, dtype=dtype)
            )
            for i in range(depth)
        )

    def full(self) -> torch.Tensor:
        r"""The end-to-end matrix :math:`W_L \cdots W_1`, shape (d, d')."""
        product = self.factors[0]
        for factor in self.factors[1:]:
            product = factor @ product
        return product

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        """Entries of the end-to-end matrix at the ``(M, 2)`` (row, column) indices."""
        check_same_device(model=self.factors[0], indices=indices)
        check_indices(indices, self.shape)
        return self.full()[indices[:, 0], indices[:, 1]]

    def singular_values(self) -> torch.Tensor:
        """Singular values of the end-to-end matrix, in decreasing order."""
        return torch.linalg.svdvals(self.full().detach())


def nuclear_norm_completion(
    shape: tuple[int, int], indices: torch.Tensor, values: torch.Tensor, **solver_options
) -> torch.Tensor:
    r"""The minimum-nuclear-norm completion, :math:`\min \|W\|_*` subject to :math:`W_{ij} = y_{ij}`
    at the observed (row, column) ``indices`` (M, 2) with ``values`` (M,); a float64 (d, d')
    matrix on the CPU. Solved by cvxpy with SCS to accuracy 1e-6 (``solver_options`` go to
    ``Problem.solve``); a solver that stops short of the status "optimal" raises ``RuntimeError``.

    Explained in the Matrix factorization chapter.
    """
    import cvxpy as cp  # only this baseline needs it

    check_indices(indices, shape)
    if values.shape != indices.shape[:1]:
        raise ValueError(f"values of shape {tuple(values.shape)} do not match the indices")
    rows, columns = indices.cpu().numpy().T
    matrix = cp.Variable(shape)
    constraints = [matrix[rows, columns] == values.detach().cpu().double().numpy()]
    problem = cp.Problem(cp.Minimize(cp.normNuc(matrix)), constraints)
    options = {"solver": "SCS", "eps_abs": 1e-6, "eps_rel": 1e-6} | solver_options
    problem.solve(**options)
    if problem.status != "optimal":
        raise RuntimeError(
            f"the nuclear-norm solver stopped with status {problem.status!r}, not 'optimal' "
            f"(options {options}); its answer is not the minimum: allow more iterations "
            "(max_iters) or try another solver"
        )
    return torch.from_numpy(matrix.value)
