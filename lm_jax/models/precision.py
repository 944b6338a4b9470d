"""Mixed precision (config.model.matmul_dtype), an approximation: matmul inputs rounded to bfloat16,
products accumulated and returned in float32.

Every matmul of both families (their forward passes and the hand-written backward passes of
recurrence.py and softmax_nll.py) goes through `matmul` or `einsum` here; everything else stays
float32: parameters, optimiser state, elementwise cell maths, layer norms, softmax statistics, the
loss and the gradients. With "float32" these are the plain operations, no cast at all, so the
float32 programs are exactly the ones without this option.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lm_jax.errors import UserError

MATMUL_DTYPES = ("float32", "bfloat16")


def validate(matmul_dtype: str) -> None:
  if matmul_dtype not in MATMUL_DTYPES:
    raise UserError(f"unknown config.model.matmul_dtype {matmul_dtype!r}; use --config.model.matmul_dtype= one of "
                    f"{', '.join(MATMUL_DTYPES)}")


def describe(matmul_dtype: str) -> str:
  """What a model's description adds: nothing for float32."""
  return "" if matmul_dtype == "float32" else f", {matmul_dtype} matmuls (approximate)"


def rounded(x: jax.Array, matmul_dtype: str) -> jax.Array:
  """`x` as a matmul sees it: rounded to `matmul_dtype`, held in float32 (for a product written
  elementwise that must agree with the matmul's entries)."""
  return x if matmul_dtype == "float32" else x.astype(matmul_dtype).astype(jnp.float32)


def matmul(a: jax.Array, b: jax.Array, matmul_dtype: str) -> jax.Array:
  """a @ b with inputs in `matmul_dtype`, accumulated in float32."""
  if matmul_dtype == "float32":
    return a @ b
  return jnp.matmul(a.astype(matmul_dtype), b.astype(matmul_dtype), preferred_element_type=jnp.float32)


def einsum(spec: str, a: jax.Array, b: jax.Array, matmul_dtype: str) -> jax.Array:
  """jnp.einsum(spec, a, b) with inputs in `matmul_dtype`, accumulated in float32."""
  if matmul_dtype == "float32":
    return jnp.einsum(spec, a, b)
  return jnp.einsum(spec, a.astype(matmul_dtype), b.astype(matmul_dtype), preferred_element_type=jnp.float32)
