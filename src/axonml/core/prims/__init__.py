"""The differentiable primitives: the only ops with backward code of their own."""
