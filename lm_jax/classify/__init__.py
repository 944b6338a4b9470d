"""Text classification: labelled corpora and their batches (data/), classifier families, and their training."""
