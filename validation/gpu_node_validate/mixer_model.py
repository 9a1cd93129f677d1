"""A small mixer-style language model (the kind the seed machine trained with DDP) and the
synthetic, learnable token data it trains on.

Each block mixes along the sequence with a learned causal (lower-triangular) seq x seq matrix,
then along the channels with an MLP; LayerNorm before each, residuals around each.
"""

import math

import torch
from torch import nn


class CausalTokenMixing(nn.Module):
    """Position t takes a learned weighted sum of positions 0..t: only the lower triangle of the
    weight is used (tril keeps the future out, and its gradient is zero above the diagonal)."""

    def __init__(self, seq_len):
        super().__init__()
        bound = 1.0 / math.sqrt(seq_len)
        self.weight = nn.Parameter(torch.empty(seq_len, seq_len).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(seq_len, 1))

    def forward(self, x):  # x: (batch, seq, channels)
        return torch.matmul(self.weight.tril(), x) + self.bias


class MixerBlock(nn.Module):
    def __init__(self, seq_len, d_model):
        super().__init__()
        self.token_norm = nn.LayerNorm(d_model)
        self.token_mixing = CausalTokenMixing(seq_len)
        self.channel_norm = nn.LayerNorm(d_model)
        self.channel_mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
        )

    def forward(self, x):
        x = x + self.token_mixing(self.token_norm(x))
        return x + self.channel_mlp(self.channel_norm(x))


class MixerLM(nn.Module):
    def __init__(self, vocab_size, seq_len, d_model, layers):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.Sequential(*(MixerBlock(seq_len, d_model) for _ in range(layers)))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, tokens):  # tokens: (batch, seq) -> logits (batch, seq, vocab)
        return self.head(self.norm(self.blocks(self.embedding(tokens))))


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())


class PatternData:
    """Sequences cut from a fixed cyclic text of pattern_period distinct tokens at random offsets:
    the next token is a function of the current one, so a model that learns drives the loss
    towards zero. Batches are a function of (seed, step) only: every rank draws the same global
    batch and keeps its own slice, which is what makes world sizes comparable."""

    def __init__(self, vocab_size, seq_len, period, seed, device):
        generator = torch.Generator().manual_seed(seed)
        period = min(period, vocab_size)
        self.text = torch.randperm(vocab_size, generator=generator)[:period].to(device)
        self.positions = torch.arange(seq_len + 1, device=device)
        self.seed, self.period, self.device = seed, period, device

    def global_batch(self, step, size):
        """(size, seq_len + 1) tokens: inputs are [:, :-1], targets [:, 1:]."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        offsets = torch.randint(0, self.period, (size, 1), generator=generator).to(self.device)
        return self.text[(offsets + self.positions) % self.period]
