"""lm_jax's benchmarks, one package per benchmark over `common/`: step_time, whole_loop, eval_methods, gpu."""
