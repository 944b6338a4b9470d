"""lm_jax/fast_random.py: a step traced with it draws threefry's original (non-partitionable) numbers, through jit
and shard_map, whatever the global setting."""

from __future__ import annotations

import jax
import numpy as np

from lm_jax import fast_random, parallel


def _draw(key: jax.Array) -> jax.Array:
  return jax.random.bits(key, (64,))


def test_a_traced_step_draws_the_original_form_inside_jit_and_shard_map():
  key = jax.random.PRNGKey(3)
  with jax.threefry_partitionable(False):
    original = np.asarray(jax.jit(_draw)(key))
  with jax.threefry_partitionable(True):
    partitionable = np.asarray(jax.jit(_draw)(key))
    assert not np.array_equal(original, partitionable)  # the two forms differ, so the test below can fail
    np.testing.assert_array_equal(jax.jit(fast_random.traced_with_fast_random(_draw))(key), original)
    mesh = parallel.data_mesh(jax.devices()[:1])
    per_device = jax.shard_map(fast_random.traced_with_fast_random(_draw), mesh=mesh, in_specs=parallel.REPLICATED,
                               out_specs=parallel.REPLICATED, check_vma=False)
    np.testing.assert_array_equal(jax.jit(per_device)(key), original)
