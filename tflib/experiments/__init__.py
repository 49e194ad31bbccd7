"""The paper's experiments as functions of a config with a ``scale`` ("book" or "paper").

Run from the command line with ``python -m tflib.experiments --help``.
"""

from tflib.experiments.dynamics import (
    DynamicsConfig,
    DynamicsResult,
    dynamics_config,
    run_dynamics,
)
from tflib.experiments.matrix import (
    MatrixConfig,
    MatrixResult,
    matrix_config,
    norms_versus_rank,
    run_matrix,
)
from tflib.experiments.natural import NaturalConfig, NaturalResult, natural_config, run_natural
from tflib.experiments.norm_law import NormLawCheck, norm_law_check
from tflib.experiments.rank_one import RankOneConfig, RankOneResult, rank_one_config, run_rank_one

__all__ = [
    "DynamicsConfig",
    "DynamicsResult",
    "NaturalConfig",
    "NaturalResult",
    "NormLawCheck",
    "dynamics_config",
    "natural_config",
    "norm_law_check",
    "run_dynamics",
    "run_natural",
    "RankOneConfig",
    "RankOneResult",
    "rank_one_config",
    "run_rank_one",
    "MatrixConfig",
    "MatrixResult",
    "matrix_config",
    "norms_versus_rank",
    "run_matrix",
]
