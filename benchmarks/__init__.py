"""Step-time benchmarks of lm_jax against PyTorch's word_language_model (`python -m benchmarks.step_time`)."""
