"""The stationary distribution of a second-order Markov chain, for synthetic corpora's exact entropy rates."""

from __future__ import annotations

import numpy as np

_STATIONARY_TOLERANCE = 1e-13  # L1 change per power-iteration step
_MAX_POWER_STEPS = 100_000


def stationary_contexts(next_class_probs: np.ndarray) -> np.ndarray:
  """Stationary distribution over (c_{t-2}, c_{t-1}) of the chain (a, b) -> (b, c), given
  next_class_probs[a, b, c] = p(c | a, b).

  Power iteration on the lazy chain (stay put half the time): same stationary
  distribution, never periodic, and O(C^3) per step where a dense solve over
  (C+1)^2 contexts would be O(C^6).
  """
  n = next_class_probs.shape[0]
  probs = np.full((n, n), 1.0 / n**2)
  for _ in range(_MAX_POWER_STEPS):
    stepped = 0.5 * (probs + np.einsum("ab,abc->bc", probs, next_class_probs))
    change = np.abs(stepped - probs).sum()
    probs = stepped
    if change < _STATIONARY_TOLERANCE:
      break
  return probs / probs.sum()
