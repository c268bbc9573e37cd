"""The Seq2Seq network: bidirectional RNN encoder, RNN decoder with Luong attention, tied embeddings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from core_model.config import ModelConfig
from core_model.dropout import Dropout
from core_model.gru_scan import fused_gru, scan_gru
from core_model.smoothed_nll import smoothed_nll
from core_model.spelling import NO_UNIT, UNITS_PER_TOKEN
from core_model.tokenizer import PAD_ID

# An RNN state: GRU keeps one tensor [L, B, H], LSTM a pair (h, c) of them.
State = Tensor | tuple[Tensor, Tensor]


def _rnn(config: ModelConfig, input_size: int, hidden_size: int, bidirectional: bool) -> nn.RNNBase:
    cls = nn.GRU if config.cell == "gru" else nn.LSTM
    return cls(
        input_size,
        hidden_size,
        num_layers=config.num_layers,
        batch_first=True,
        bidirectional=bidirectional,
        dropout=config.dropout if config.num_layers > 1 else 0.0,
    )


def _map_state(state: State, fn: Callable[[Tensor], Tensor]) -> State:
    """Apply fn to the state tensor, or to both tensors of an LSTM state."""
    return (fn(state[0]), fn(state[1])) if isinstance(state, tuple) else fn(state)


@dataclass
class Memory:
    """What the decoder attends to, computed once per source batch."""

    values: Tensor  # [B, S, H] encoder outputs
    keys: Tensor  # [B, S, H] (or [B, S, A] for additive) projected once for attention scoring
    mask: Tensor  # [B, S] True on real tokens

    def select(self, index: Tensor) -> Memory:
        """Rows picked (and repeated) by index, e.g. to follow beams."""
        return Memory(self.values[index], self.keys[index], self.mask[index])


class Attention(nn.Module):
    """Luong attention (general or dot score) or Bahdanau's additive score, over padded memory."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.kind = config.attention
        size = config.hidden_size
        if self.kind == "general":
            self.key_proj = nn.Linear(size, size, bias=False)
        elif self.kind == "additive":
            self.key_proj = nn.Linear(size, size, bias=False)
            self.query_proj = nn.Linear(size, size, bias=True)
            self.v = nn.Linear(size, 1, bias=False)

    def keys(self, values: Tensor) -> Tensor:
        return values if self.kind == "dot" else self.key_proj(values)

    def forward(self, query: Tensor, memory: Memory) -> Tensor:
        """query [B, T, H] -> context [B, T, H]."""
        if self.kind == "additive":
            q = self.query_proj(query).unsqueeze(2)  # [B, T, 1, H]
            k = memory.keys.unsqueeze(1)  # [B, 1, S, H]
            scores = self.v(torch.tanh(q + k)).squeeze(-1)  # [B, T, S]
        else:
            scores = torch.bmm(query, memory.keys.transpose(1, 2))  # [B, T, S]
        scores = scores.float().masked_fill(~memory.mask.unsqueeze(1), torch.finfo(torch.float32).min)
        weights = torch.softmax(scores, dim=-1).to(memory.values.dtype)  # [B, T, S]
        return torch.bmm(weights, memory.values)  # [B, T, H]


class Seq2Seq(nn.Module):
    """forward() returns logits (and the loss when targets are given); decode_step() serves decoding."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        E, H = config.embedding_dim, config.hidden_size
        self.embedding = nn.Embedding(config.vocab_size, E, padding_idx=PAD_ID)
        self.spelling_embedding: nn.EmbeddingBag | None = None
        if config.prompt_spelling:
            # The spelling units of each token (set_token_spellings); saved with the weights.
            self.register_buffer("token_spellings",
                                 torch.zeros(config.vocab_size, UNITS_PER_TOKEN, dtype=torch.long))
            self.spelling_embedding = nn.EmbeddingBag(config.prompt_spelling, E, mode="mean",
                                                       padding_idx=NO_UNIT)
        self.dropout = Dropout(config.dropout)
        # Each direction gets half the size so that their concatenation is H (OpenNMT's "brnn").
        self.encoder = _rnn(config, E, H // 2, bidirectional=True)
        self.decoder = _rnn(config, E, H, bidirectional=False)
        self.attention = Attention(config)
        self.combine = nn.Linear(2 * H, H)  # Luong's attentional hidden state tanh(W[c; h])
        self.to_embedding = nn.Linear(H, E)  # logits = to_embedding(h~) @ embedding^T (tied)
        self.output_bias = nn.Parameter(torch.zeros(config.vocab_size))
        # Serving may replace the tied projection by a packed copy of it, and the prompt embedding
        # by a table of each token's (see core_model/serving.py).
        self.output: nn.Module | None = None
        self.prompt_table: Tensor | None = None
        # Training runs the GRUs through core_model/gru_scan.py where it can; False keeps nn.GRU's own
        # loop (for comparisons).
        self.fused_training = True
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.normal_(self.embedding.weight, std=self.config.embedding_dim**-0.5)
        with torch.no_grad():
            self.embedding.weight[PAD_ID].zero_()
        if self.spelling_embedding is not None:
            nn.init.normal_(self.spelling_embedding.weight, std=self.config.embedding_dim**-0.5)
            with torch.no_grad():
                self.spelling_embedding.weight[NO_UNIT].zero_()
        for name, param in self.named_parameters():
            if "weight_hh" in name:
                for chunk in param.data.chunk(3 if self.config.cell == "gru" else 4, dim=0):
                    nn.init.orthogonal_(chunk)

    def set_token_spellings(self, table: Tensor) -> None:
        """table [vocab, UNITS_PER_TOKEN]: the spelling-unit ids of each token (core_model/spelling.py)."""
        self.get_buffer("token_spellings").copy_(table)

    def embed_prompt(self, src: Tensor, embedded: Tensor | None = None) -> Tensor:
        """src [B, S] -> [B, S, E]: token embeddings (or the given ones), plus the mean of their
        spelling units' if configured."""
        if self.prompt_table is not None:
            return F.embedding(src, self.prompt_table)
        x = self.embedding(src) if embedded is None else embedded
        if self.spelling_embedding is not None:
            spelled = self.get_buffer("token_spellings")[src.reshape(-1)]  # [B*S, UNITS_PER_TOKEN]
            x = x + self.spelling_embedding(spelled).view_as(x)
        return x

    def encode(self, src: Tensor, src_lengths: Tensor, embedded: Tensor | None = None) -> tuple[Memory, State]:
        """src [B, S] padded ids, src_lengths [B] (all >= 1) -> attention memory, decoder start state.
        embedded: src's token embeddings [B, S, E], when already looked up."""
        B, S = src.shape
        x = self.dropout(self.embed_prompt(src, embedded))  # [B, S, E]
        full = bool((src_lengths == S).all())
        if self._trains_fused(self.encoder):
            values, final = scan_gru(self.encoder, x, lengths=None if full else src_lengths)  # type: ignore[arg-type]
            keys = self.attention.keys(values)
        elif full:  # no padding (always so for one prompt): the faster dense path
            values, final = self.encoder(x)  # [B, S, H]
            keys = self.attention.keys(values)
        else:
            packed = pack_padded_sequence(x, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
            packed_out, final = self.encoder(packed)
            values, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=S)  # [B, S, H]
            # Keys of the real tokens only: projecting the padding of a batch of prompts of mixed
            # lengths too cost a tenth of the encoder's time (64 prompts of the bundled corpus).
            keys, _ = pad_packed_sequence(packed_out._replace(data=self.attention.keys(packed_out.data)),
                                          batch_first=True, total_length=S)
        L = self.config.num_layers

        def bridge(s: Tensor) -> Tensor:  # [2L, B, H/2] -> [L, B, H]: both directions side by side
            s = s.view(L, 2, B, -1)  # [L, 2, B, H/2]
            return torch.cat([s[:, 0], s[:, 1]], dim=-1).contiguous()  # [L, B, H]

        mask = src != PAD_ID  # [B, S]
        memory = Memory(values, keys, mask)
        return memory, _map_state(final, bridge)

    def decode(self, tokens: Tensor, state: State, memory: Memory,
               embedded: Tensor | None = None) -> tuple[Tensor, State]:
        """tokens [B, T] (teacher-forced inputs, or T=1 when stepping) -> features [B, T, H], state.
        embedded: the tokens' embeddings [B, T, E], when already looked up."""
        # Reply tokens are not spelled: spelling them too lowered bits/char but not the replies'
        # chrF (Korean, two seeds: 18.8 and 19.6 against 20.7 and 19.4 with prompts spelled only).
        y = self.dropout(self.embedding(tokens) if embedded is None else embedded)  # [B, T, E]
        if self._trains_fused(self.decoder):
            output, state = scan_gru(self.decoder, y, state)  # type: ignore[arg-type]
        else:
            output, state = self.decoder(y, state)  # [B, T, H]
        context = self.attention(output, memory)  # [B, T, H]
        features = torch.tanh(self.combine(torch.cat([context, output], dim=-1)))  # [B, T, H]
        return self.dropout(features), state

    def _trains_fused(self, rnn: nn.Module) -> bool:
        """Whether rnn runs through the fused GRU loop: a GRU, in training, where it was built."""
        return (self.fused_training and self.training and torch.is_grad_enabled()
                and type(rnn) is nn.GRU and fused_gru() is not None)

    def logits(self, features: Tensor) -> Tensor:
        """features [..., H] -> logits [..., V] through the tied embedding matrix."""
        projected = self.to_embedding(features)
        if self.output is not None:
            return self.output(projected)
        return F.linear(projected, self.embedding.weight, self.output_bias)

    def forward(
        self,
        src: Tensor,
        src_lengths: Tensor,
        tgt_in: Tensor,
        targets: Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing over the whole target in one call.

        Without targets: logits [B, T, V]. With targets [B, T]: logits [N, V] for the N non-pad
        positions only (padding never reaches the output layer) and the mean cross-entropy.
        """
        prompt_embedded, reply_embedded = self._embed_together(src, tgt_in)
        memory, state = self.encode(src, src_lengths, prompt_embedded)
        features, _ = self.decode(tgt_in, state, memory, reply_embedded)  # [B, T, H]
        if targets is None:
            return self.logits(features), None
        keep = targets != PAD_ID  # [B, T]
        logits = self.logits(features[keep])  # [N, V]
        loss = smoothed_nll(torch.log_softmax(logits.float(), dim=-1), targets[keep], label_smoothing)
        return logits, loss

    def _embed_together(self, src: Tensor, tgt_in: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """The prompts' and replies' token embeddings from one lookup: in training, each lookup's
        gradient is a zeroed [vocab, E] matrix added to the others (16 MB at the tutorial's size),
        so one lookup instead of two saves 2.4 ms a step there. (None, None) for a model packed for
        serving, whose prompts are embedded from their own table."""
        if self.prompt_table is not None:
            return None, None
        both = self.embedding(torch.cat([src.reshape(-1), tgt_in.reshape(-1)]))
        prompts, replies = both.split([src.numel(), tgt_in.numel()])
        return prompts.view(*src.shape, -1), replies.view(*tgt_in.shape, -1)

    def decode_step(self, tokens: Tensor, state: State, memory: Memory) -> tuple[Tensor, State]:
        """tokens [B] -> logits [B, V] for the next position, new state."""
        features, state = self.decode(tokens.unsqueeze(1), state, memory)  # [B, 1, H]
        return self.logits(features.squeeze(1)), state
