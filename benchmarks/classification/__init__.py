"""Text classification: lm_jax's classifiers on the real corpora beside the published figures and two baselines, and
Kim's CNN against a PyTorch Kim CNN (`python -m benchmarks.classification`)."""
