"""Evaluation-time methods on a trained model against their references (`python -m benchmarks.eval_methods`)."""
