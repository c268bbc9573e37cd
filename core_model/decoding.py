"""Reply generation on token ids, batched over prompts: greedy, beam search (core_model/beam_search.py)
and sampling, over the next-token scores of core_model/search_steps.py.

Every strategy applies the same constraints (minimum length, no repeated n-gram within the reply,
no n-gram copied from the prompt), so beam search of width 1 equals greedy decoding. Given guides
(one per source) and config.neighbour_share > 0, every strategy decodes from the model's
distribution mixed with the guides' (core_model/guidance.py), and the n-gram blocking applies to
the model's distribution only: a neighbour's reply that repeats itself may be followed to its end.
An empty source (a prompt that tokenizes to nothing) gets an empty reply without running the model.
Greedy decoding goes a step at a time, alone as in a batch: it takes the tokens the guides bind
without the output layer and writes out a reply bound to its end without the decoder. (Reading each
neighbour reply a prompt follows in one decoder call, as speculative decoding reads a draft, was
slower for one prompt: English chat 4.22-4.37 ms at the median against 3.03-3.13.)
In a batch, greedy decoding computes the output layer only for the rows whose next token the
guides leave to the model (_next_tokens). A reply the guides bind to its end (the neighbour
replies it follows go on alike once the token they bind next is written, GuideRows.bound_rests)
is written out without the decoder, in a batch or alone: the same replies, `chatbot bench infer`'s
64 concurrent requests 1,581-1,649 replies/s against 1,092-1,123 (bound from their start only),
and one Korean prompt at a time 2.0 ms against 2.7 (half of them are bound after their first token).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from core_model.beam_search import beam_search
from core_model.config import DecodeConfig
from core_model.guidance import Guide, GuideRows
from core_model.model import Memory, Seq2Seq, State
from core_model.row_ops import argmax_rows
from core_model.search_steps import (
    NEG_INF,
    Finished,
    Hypothesis,
    Result,
    choice_scores,
    select_rows,
)
from core_model.tokenizer import EOS_ID, GO_ID, PAD_ID


@dataclass(frozen=True)
class Encoded:
    """The non-empty sources of a batch through the encoder: several searches over the same
    sources (the default reply runs two) need to encode them only once."""

    src: Tensor  # [B, S] the ids of the non-empty sources, in order, padded
    memory: Memory
    state: State


@torch.inference_mode()
def encode(model: Seq2Seq, sources: Sequence[Sequence[int]]) -> Encoded:
    """sources (at least one of them non-empty) encoded for the searches."""
    limit = model.config.max_source_tokens
    src = _pad([list(source)[-limit:] for source in sources if source])  # [B, S]
    memory, state = model.encode(src, (src != PAD_ID).sum(dim=1))
    return Encoded(src, memory, state)


def generate(model: Seq2Seq, sources: Sequence[Sequence[int]], config: DecodeConfig,
             guides: Sequence[Guide] | None = None) -> list[list[int]]:
    """One reply per source, as ids without <go> or <eos>."""
    return _collect(len(sources), generate_as_done(model, sources, config, guides))


def candidates(model: Seq2Seq, sources: Sequence[Sequence[int]], config: DecodeConfig,
               guides: Sequence[Guide] | None = None, encoded: Encoded | None = None) -> list[list[Hypothesis]]:
    """Beam search's n-best list for each source, best first (empty for an empty source)."""
    return _collect(len(sources), candidates_as_done(model, sources, config, guides, encoded))


Search = Callable[[Seq2Seq, Memory, State, Tensor, "GuideRows | None", DecodeConfig, int],
                  Iterator[Finished[Result]]]


@torch.inference_mode()
def generate_as_done(model: Seq2Seq, sources: Sequence[Sequence[int]], config: DecodeConfig,
                     guides: Sequence[Guide] | None = None,
                     encoded: Encoded | None = None) -> Iterator[Finished[list[int]]]:
    """generate(), handing over each reply at the step it ends: a short reply need not wait for
    the longest one of its batch. encoded: the sources as encode() gave them, if already encoded."""
    if config.strategy == "beam" and config.beam_width > 1:
        for finished in candidates_as_done(model, sources, config, guides, encoded):
            yield [(index, hypotheses[0].ids if hypotheses else []) for index, hypotheses in finished]
        return
    yield from _search_non_empty(model, sources, config, guides, _step_by_step, encoded)


@torch.inference_mode()
def candidates_as_done(model: Seq2Seq, sources: Sequence[Sequence[int]], config: DecodeConfig,
                       guides: Sequence[Guide] | None = None,
                       encoded: Encoded | None = None) -> Iterator[Finished[list[Hypothesis]]]:
    """candidates(), handing over each source's n-best list at the step its search ends.
    encoded: the sources as encode() gave them, if already encoded."""
    yield from _search_non_empty(model, sources, config, guides, beam_search, encoded)


def reply_limit(model: Seq2Seq, config: DecodeConfig) -> int:
    """The most tokens a reply gets: a reply this long was cut there (it ended in no <eos>)."""
    return min(config.max_length, model.config.max_target_tokens)


def _collect(count: int, steps: Iterator[Finished[Result]]) -> list[Result]:
    results: list[Result] = [[] for _ in range(count)]
    for finished in steps:
        for index, result in finished:
            results[index] = result
    return results


def _search_non_empty(model: Seq2Seq, sources: Sequence[Sequence[int]], config: DecodeConfig,
                      guides: Sequence[Guide] | None, search: Search[Result],
                      encoded: Encoded | None = None) -> Iterator[Finished[Result]]:
    """Run search on the non-empty sources, encoded (unless they were); an empty source gets [] at once."""
    live = [i for i, source in enumerate(sources) if source]
    if len(live) < len(sources):
        yield [(i, []) for i, source in enumerate(sources) if not source]
    if not live:
        return
    encoded = encoded or encode(model, sources)
    src, memory, state = encoded.src, encoded.memory, encoded.state
    max_length = reply_limit(model, config)
    rows = None
    if guides is not None and config.neighbour_share > 0 and any(guides[i] for i in live):
        rows = GuideRows.of([guides[i] for i in live])
    for finished in search(model, memory, state, src, rows, config, max_length):
        yield [(live[row], result) for row, result in finished]


def _pad(rows: Sequence[Sequence[int]]) -> Tensor:
    # One tensor from padded lists: a tensor per row took 0.5 ms for a batch of 64 prompts.
    width = max(len(row) for row in rows)
    return torch.tensor([[*row, *[PAD_ID] * (width - len(row))] for row in rows], dtype=torch.long)


def _step_by_step(model: Seq2Seq, memory: Memory, state: State, src: Tensor, guides: GuideRows | None,
                  config: DecodeConfig, max_length: int) -> Iterator[Finished[list[int]]]:
    """Greedy (argmax) or sampling (temperature, top-k, top-p), one token per step for all rows.

    A row that has produced <eos> leaves the batch, so that the steps after it decode only the
    replies still growing (batch replies differ a lot in length).
    """
    B = src.size(0)
    generator = None
    if config.strategy == "sample" and config.seed is not None:
        generator = torch.Generator().manual_seed(config.seed)
    replies: list[list[int]] = [[] for _ in range(B)]
    rows = list(range(B))  # the reply each row of the shrinking batch belongs to
    tokens = torch.full((B,), GO_ID, dtype=torch.long)
    generated = torch.empty((B, 0), dtype=torch.long)
    while generated.size(1) < max_length:
        ended = []
        forced = None
        if config.strategy == "greedy" and guides is not None:
            forced = guides.forced(config.neighbour_share)  # once, for bound_rests and _next_tokens
            # a reply the guides bind to its end is written out at once (GuideRows.bound_rests)
            for position, rest in enumerate(guides.bound_rests(config.neighbour_share, forced)):
                reply = replies[rows[position]]
                if rest is not None and len(reply) + len(rest) - 1 >= config.min_length:
                    replies[rows[position]] = (reply + rest[:-1])[:max_length]
                    ended.append(position)
        if not ended:
            features, state = model.decode(tokens.unsqueeze(1), state, memory)  # [R, 1, H]
            tokens = _next_tokens(model, features.squeeze(1), guides, forced, generated, src, config, generator)
            generated = torch.cat([generated, tokens.unsqueeze(1)], dim=1)  # [R, t+1]
            guides = guides.advance(tokens) if guides is not None else None
            for position, (row, token) in enumerate(zip(rows, tokens.tolist(), strict=True)):
                if token == EOS_ID:
                    ended.append(position)
                else:
                    replies[row].append(token)
        if ended:
            yield [(rows[p], replies[rows[p]]) for p in ended]
            if len(ended) == len(rows):
                return
            gone = set(ended)
            keep = torch.tensor([p for p in range(len(rows)) if p not in gone])
            rows = [rows[p] for p in keep.tolist()]
            tokens, generated, src = tokens[keep], generated[keep], src[keep]
            memory, state = memory.select(keep), select_rows(state, keep)
            guides = guides.select(keep) if guides is not None else None
    yield [(row, replies[row]) for row in rows]  # cut at max_length


def _next_tokens(model: Seq2Seq, features: Tensor, guides: GuideRows | None, forced: Tensor | None,
                 generated: Tensor, prompts: Tensor, config: DecodeConfig, generator: torch.Generator | None) -> Tensor:
    """The next token [R] of each row, greedy or sampled, from the decoder's features [R, H]. In
    greedy decoding, the rows that the guides bind to a token (forced, GuideRows.forced's) take it without
    their distribution being computed: the output layer and the mixture, most of a step's work
    in a batch, run for the other rows only. The same replies (587 Korean and 3,000 English
    prompts, in batches of 64); 64 Korean prompts at once took 41.5 ms against 61.9, and
    `chatbot bench infer`'s 64 concurrent requests ran 1,232-1,312 replies/s against 866-873."""
    if forced is None or guides is None:  # sampling, or no guides
        scores = choice_scores(model.logits(features).float(), guides, generated, prompts, config)
        return _sample(scores, config, generator) if config.strategy == "sample" else argmax_rows(scores)
    tokens = forced.clone()
    if generated.size(1) < config.min_length:
        tokens[tokens == EOS_ID] = -1  # <eos> is not allowed yet: the model chooses among the rest
    free = (tokens < 0).nonzero().squeeze(1)
    if free.numel() == tokens.numel():
        return argmax_rows(choice_scores(model.logits(features).float(), guides, generated, prompts, config))
    if free.numel():
        scores = choice_scores(model.logits(features[free]).float(), guides.select(free), generated[free],
                                prompts[free], config)
        tokens[free] = argmax_rows(scores)
    return tokens


def _sample(logits: Tensor, config: DecodeConfig, generator: torch.Generator | None) -> Tensor:
    logits = logits / max(config.temperature, 1e-5)  # [B, V]
    if config.top_k > 0:
        kth = logits.topk(min(config.top_k, logits.size(-1)), dim=-1).values[:, -1:]  # [B, 1]
        logits = logits.masked_fill(logits < kth, NEG_INF)
    if config.top_p < 1.0:
        ordered, order = logits.sort(dim=-1, descending=True)  # [B, V]
        probs = ordered.softmax(dim=-1)
        drop = probs.cumsum(dim=-1) - probs > config.top_p  # keeps at least the top token
        logits = logits.scatter(1, order, ordered.masked_fill(drop, NEG_INF))
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(1)  # [B]
