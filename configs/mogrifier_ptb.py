"""The Mogrifier LSTM on Penn Treebank (Melis, Kočiský & Blunsom, ICLR 2020; lm_jax/models/mogrifier.py), chosen by
the config string:

  paper: the paper's tuned 24M-parameter PTB model, from deepmind/lamb's experiment/mogrifier/config/
    786252db3825+_tune_ptb_24m_lstm_fm_d2_arms/trial_483 (valid / test 51.4 / 50.1 in the paper): 2 layers, tied,
    embedding = hidden = 912 (lamb sizes the model by num_params=24M; 912 is the largest lm_jax model within it),
    5 rounds of rank 84; dropouts input 0.729, inter-layer 0.291, output 0.716, state 0.387; lamb's 'rmsprop' (Adam
    with beta1 0) at lr 0.0023, L2 2.5e-4, clip 10; batch 64, bptt 70, no lr drops; 1000 turns of 200 steps = 200,000
    steps, 962 epochs of PTB's 208 windows. Where lm_jax differs from lamb (a near equivalent, or left out):
    - dropout masks: lamb's input/output masks are per position and its state dropout masks h itself (shared over
      time); here AWD-LSTM's locked masks (dropouti, dropouth, dropout) and weight drop on W_hh at the state rate;
    - lamb's LSTM caps the input gate (min(i, 1 - f)), starts the forget bias at 1, initialises with fan-in
      variance scaling, and sums the layers' outputs (lstm_skip_connection); here PyTorch's LSTM and init, and the
      top layer's output;
    - lamb's L2 is in the loss (clipped with it); torch's weight decay here, added after the clip;
    - not in lm_jax: lamb's averaging of the weights after 50 turns without improvement (or at turn 800), resetting
      a column's state with probability 0.01 per window, the tuned softmax temperature at evaluation.
    Cost: ~1,000 h on the project's 2-core CPU (18.5 s per window measured, 208 windows per epoch); about 2-5 GPU
    hours estimated for an A100/H100-class GPU (644 GFLOP per window, latency-bound at ~40-80 ms per window).
  cpu / cpu_lstm: a comparison sized for a 2-core CPU, the Mogrifier and an LSTM with the same number of parameters
    (3,789,072 and 3,787,840) and the same recipe: 2 layers tied, Mogrifier 256 wide with 5 rounds of rank 32, LSTM
    265 wide; lamb's optimiser at lr 2e-3, AWD's locked dropouts scaled down, batch 64, bptt 70, 12 epochs. Measured
    here: ~765 s and ~700 s per epoch (3.59 and 3.31 s per window, load 5-6), ~2.6 h and ~2.3 h per run; pinned to
    one core for 50 minutes each (2026-12-04): 446 and 387 s per epoch, test 171.17 and 247.15 after 6 and 7
    epochs (docs/experiments.md).

Commands (runs/ holds each run's checkpoints and metrics.jsonl):
  lm-jax-train --config=configs/mogrifier_ptb.py:paper --config.data.dir=../shared/data/ptb --workdir=runs/mogrifier_ptb
  lm-jax-train --config=configs/mogrifier_ptb.py:cpu --config.data.dir=../shared/data/ptb --workdir=runs/mogrifier_cpu
  lm-jax-train --config=configs/mogrifier_ptb.py:cpu_lstm --config.data.dir=../shared/data/ptb --workdir=runs/lstm_cpu
Measurements and the estimate's arithmetic: docs/experiments.md ("Mogrifier LSTM").
"""

from lm_jax.config import reference_config

RECIPES = ("paper", "cpu", "cpu_lstm")


def get_config(recipe: str = "paper"):
  if recipe not in RECIPES:
    raise ValueError(f"unknown recipe {recipe!r}: use one of {', '.join(RECIPES)}")
  c = reference_config()
  c.data.update(dir="data/ptb", hub_name="ptb")
  c.model.update(cell="mogrifier_lstm", nlayers=2, tied=True, locked_dropout=True)
  c.optim.update(name="rmsprop", schedule="when", when=())  # no lr drops
  c.update(batch_size=64, bptt=70, seed=1)
  if recipe == "paper":
    # init_range: lamb's embedding init has variance 1/912, as U(-0.057, 0.057) has.
    c.model.update(emsize=912, nhid=912, mogrify_rounds=5, mogrify_rank=84, init_range=0.057,
                   dropouti=0.729, dropouth=0.291, dropout=0.716, wdrop=0.387)
    c.optim.update(lr=0.0023, clip=10.0, weight_decay=2.5e-4)
    c.update(epochs=962)
  else:
    width = 256 if recipe == "cpu" else 265
    c.model.update(emsize=width, nhid=width, dropouti=0.4, dropouth=0.2, dropout=0.4, wdrop=0.2)
    if recipe == "cpu":
      c.model.update(mogrify_rounds=5, mogrify_rank=32)
    else:
      c.model.cell = "lstm"
    c.optim.update(lr=2e-3, clip=10.0, weight_decay=2.5e-4)
    c.update(epochs=12)
  return c
