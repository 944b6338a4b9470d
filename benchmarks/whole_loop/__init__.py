"""The whole training loop, lm_jax's trainer against the reference's main.py (`python -m benchmarks.whole_loop`)."""
