"""PyTorch's side of the speed comparison: torch_reference/kim_cnn.py's TorchKimCNN at the shape, loaded with the
weights the lm_jax worker wrote, trained by its `train_step` (Adadelta, rho 0.95, eps 1e-6, then Kim's max-norm;
`loss.item()` waits for the step) and predicting softmax probabilities under torch.no_grad() in eval mode."""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.classification.speed import Shape, Workload, prediction_batch, training_batches
from benchmarks.common.torch_device import device_description, prepare
from torch_reference.kim_cnn import TorchKimCNN, make_optimizer, train_step


def on_device(device: torch.device, tokens_BxT: np.ndarray, mask_BxT: np.ndarray,
              labels_B: np.ndarray) -> tuple[torch.Tensor, ...]:
  return (torch.from_numpy(tokens_BxT).long().to(device), torch.from_numpy(mask_BxT).to(device),
          torch.from_numpy(labels_B).long().to(device))


def build(shape: Shape, weights_path: str) -> Workload:
  device = prepare(seed=0)
  model = TorchKimCNN(shape.vocab, shape.classes, emsize=shape.emsize, filter_widths=shape.filter_widths,
                      filter_maps=shape.filter_maps).to(device)
  with np.load(weights_path) as weights:
    model.load_params(dict(weights))
  optimizer = make_optimizer(model)
  batches = [on_device(device, *arrays) for arrays in training_batches(shape)]
  tokens_BxT, mask_BxT, _ = on_device(device, *prediction_batch(shape))

  def train(i: int) -> None:
    train_step(model, optimizer, *batches[i])

  @torch.no_grad()
  def predict() -> np.ndarray:
    model.eval()
    return torch.softmax(model(tokens_BxT, mask_BxT), dim=1).cpu().numpy()

  return Workload(train, predict, device_description(device))
