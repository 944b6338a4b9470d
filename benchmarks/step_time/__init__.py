"""Step time of lm_jax against PyTorch's word_language_model per model, size, vocabulary and matmul dtype
(`python -m benchmarks.step_time`)."""
