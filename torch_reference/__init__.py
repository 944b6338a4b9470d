"""PyTorch references lm_jax is checked against (tests/) and timed against (benchmarks/): the recipes
written from torch.nn parts with the originals' structure, parameter names and rules. Kept out of
lm_jax, which imports without torch."""
