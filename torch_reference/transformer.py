"""PyTorch's word_language_model TransformerModel (pytorch/examples model.py), with the reference's structure,
parameter names and init: an nn.Transformer whose encoder is the model, its decoder replaced by the linear
output layer. `forward` returns logits and passes an empty hidden state through, so the reference's train
step and evaluate in word_language_model.py serve it unchanged (the reference's main.py skips the hidden
state for Transformers; an empty one is the same). `generate` is the reference's generate.py loop for
Transformers: the whole sequence re-fed for every word.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class PositionalEncoding(nn.Module):
  """The reference's: x + pe[:T], then dropout; pe is a [max_len, 1, E] buffer of sin/cos."""

  def __init__(self, d_model: int, dropout: float = 0.1, max_len: int = 5000):
    super().__init__()
    self.dropout = nn.Dropout(p=dropout)
    pe = torch.zeros(max_len, d_model)
    position = torch.arange(0, max_len, dtype=torch.float).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    self.register_buffer("pe", pe.unsqueeze(0).transpose(0, 1))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.dropout(x + self.pe[:x.size(0), :])


class TorchTransformerModel(nn.Transformer):
  """The reference's TransformerModel. `layer_dropout` is nn.Transformer's dropout inside the encoder layers,
  which the reference leaves at its default 0.1; `norm_first` is lm_jax's pre_norm option."""

  def __init__(self, vocab_size: int, emsize: int, nhead: int, nhid: int, nlayers: int, dropout: float = 0.5,
               layer_dropout: float = 0.1, norm_first: bool = False):
    super().__init__(d_model=emsize, nhead=nhead, dim_feedforward=nhid, num_encoder_layers=nlayers,
                     dropout=layer_dropout, norm_first=norm_first)
    self.model_type = "Transformer"
    self.pos_encoder = PositionalEncoding(emsize, dropout)
    self.input_emb = nn.Embedding(vocab_size, emsize)
    self.ninp = emsize
    self.decoder = nn.Linear(emsize, vocab_size)
    nn.init.uniform_(self.input_emb.weight, -0.1, 0.1)
    nn.init.zeros_(self.decoder.bias)
    nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

  def forward(self, src_TxB: torch.Tensor, hidden: tuple = (), has_mask: bool = True) -> tuple[torch.Tensor, tuple]:
    mask = torch.log(torch.tril(torch.ones(len(src_TxB), len(src_TxB)))) if has_mask else None
    x = self.pos_encoder(self.input_emb(src_TxB) * math.sqrt(self.ninp))
    return self.decoder(self.encoder(x, mask=mask)), hidden

  def init_hidden(self, batch_size: int) -> tuple:
    return ()


@torch.no_grad()
def generate(model: TorchTransformerModel, num_words: int, temperature: float, has_mask: bool = False) -> list[int]:
  """The reference's generate.py for Transformers: a uniformly drawn first word, then for every word the
  whole sequence so far through the model (without the causal mask, as the reference calls model(input,
  False)), the next word sampled from the last position's softmax(logits / temperature)."""
  model.eval()
  input_Tx1 = torch.randint(model.input_emb.num_embeddings, (1, 1), device=model.decoder.weight.device)
  words = []
  for _ in range(num_words):
    logits_Tx1xV, _ = model(input_Tx1, has_mask=has_mask)
    word = int(torch.multinomial(torch.softmax(logits_Tx1xV[-1, 0] / temperature, dim=-1), 1))
    input_Tx1 = torch.cat([input_Tx1, input_Tx1.new_full((1, 1), word)], 0)
    words.append(word)
  return words
