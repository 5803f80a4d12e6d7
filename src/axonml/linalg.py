"""``axonml.linalg``: norms, inverse, solve, determinant, Cholesky (all differentiable)."""
