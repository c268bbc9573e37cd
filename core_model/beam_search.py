"""Beam search over guided or unguided next-token scores, batched over prompts."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from core_model.config import DecodeConfig
from core_model.guidance import GuideRows
from core_model.model import Memory, Seq2Seq, State
from core_model.row_ops import topk_rows
from core_model.search_steps import (
    NEG_INF,
    Finished,
    Hypothesis,
    length_penalty,
    next_scores,
    select_rows,
    strip_ends,
)
from core_model.tokenizer import EOS_ID, GO_ID, PAD_ID


def beam_search(model: Seq2Seq, memory: Memory, state: State, src: Tensor, guides: GuideRows | None,
          config: DecodeConfig, max_length: int) -> Iterator[Finished[list[Hypothesis]]]:
    """Each prompt's finished hypotheses, best (length-normalised log-probability) first.

    A prompt whose search is over leaves the batch with its K rows, as in greedy decoding.
    """
    B, K = src.size(0), config.beam_width
    # Every beam of a prompt starts the same, so the first step runs one row per prompt (width 1)
    # and its best K continuations become the K beams.
    width = 1
    prompts = src  # [B*width, S]: row r follows prompt alive[r // width]
    scores = torch.zeros((B, 1))  # [A, width] the search's log-probabilities
    tokens = torch.full((B,), GO_ID, dtype=torch.long)
    generated = torch.empty((B, 0), dtype=torch.long)
    hypotheses: list[list[Hypothesis]] = [[] for _ in range(B)]
    alive = list(range(B))  # the prompt each group of rows belongs to
    for step in range(max_length):
        A = len(alive)
        logits, state = model.decode_step(tokens, state, memory)  # [A*width, V]
        # Normalised before the constraints, so a blocked token's probability is dropped, not shared out.
        log_probs = torch.log_softmax(logits.float(), dim=-1)  # [A*width, V]
        step_scores = next_scores(log_probs, guides, generated, prompts, config)
        # The best 2K continuations of the beams are among each beam's own best 2K.
        best, best_tokens = topk_rows(step_scores, 2 * K)  # [A*width, 2K]
        candidates = (scores.view(-1, 1) + best).view(A, width * 2 * K)
        top_scores, top_positions = candidates.topk(2 * K, dim=-1)  # [A, 2K]
        top_tokens = best_tokens.view(A, width * 2 * K).gather(1, top_positions)
        penalty = length_penalty(step + 1, config.length_penalty)
        kept_scores = [[NEG_INF] * K for _ in range(A)]
        next_beams = [[0] * K for _ in range(A)]
        next_tokens = [[PAD_ID] * K for _ in range(A)]
        history = generated.tolist()
        over = set()
        for a, (row_scores, row_positions, row_tokens) in enumerate(zip(
                top_scores.tolist(), top_positions.tolist(), top_tokens.tolist(), strict=True)):
            found = hypotheses[alive[a]]
            kept = 0
            for score, position, token in zip(row_scores, row_positions, row_tokens, strict=True):
                if score == NEG_INF or kept == K:
                    break
                beam = position // (2 * K)
                if token == EOS_ID:
                    found.append(Hypothesis(score / penalty, history[a * width + beam]))
                else:
                    kept_scores[a][kept] = score
                    next_beams[a][kept], next_tokens[a][kept] = beam, token
                    kept += 1
            if kept == 0 or (len(found) >= K and _cannot_improve(found, K, kept_scores[a][0], penalty)):
                over.add(a)
        if over:
            yield [(alive[a], _best_first(hypotheses[alive[a]])) for a in sorted(over)]
        if len(over) == A:
            return
        reorder = torch.tensor([a * width + beam for a, beams in enumerate(next_beams) for beam in beams])  # [A*K]
        tokens, scores = torch.tensor(next_tokens).view(-1), torch.tensor(kept_scores)  # [A*K], [A, K]
        generated = torch.cat([generated[reorder], tokens.view(-1, 1)], dim=1)  # [A*K, t+1]
        state = select_rows(state, reorder)
        guides = guides.select(reorder).advance(tokens) if guides is not None else None
        if width != K:  # the first step: each prompt's one row becomes its K beams
            memory, prompts, width = memory.select(reorder), prompts[reorder], K
        if over:
            keep = torch.tensor([a for a in range(A) if a not in over])
            rows = (keep.unsqueeze(1) * K + torch.arange(K)).view(-1)
            alive = [alive[a] for a in keep.tolist()]
            generated, tokens, prompts, scores = generated[rows], tokens[rows], prompts[rows], scores[keep]
            memory, state = memory.select(rows), select_rows(state, rows)
            guides = guides.select(rows) if guides is not None else None
    else:
        penalty = length_penalty(max_length, config.length_penalty)
        history = generated.tolist()
        for a, (b, row_scores) in enumerate(zip(alive, scores.tolist(), strict=True)):
            hypotheses[b] += [Hypothesis(s / penalty, history[a * width + k])
                              for k, s in enumerate(row_scores) if s > NEG_INF]
        yield [(b, _best_first(hypotheses[b])) for b in alive]


def _cannot_improve(found: list[Hypothesis], K: int, best_alive: float, penalty: float) -> bool:
    """Whether a prompt's search is over once K replies have ended: when its best live beam,
    normalised at its length now, no longer beats the K-th best ended reply (as Hugging Face's
    beam search decides). Stopping at the K-th ended reply instead let short replies that left a
    neighbour's early crowd out the whole reply the search was still writing (the default model
    answered "심심해" with a neighbour's joke ending "…바보로 여겨지는게 벌"). Measured on one model
    each: Korean valid.tsv chrF 28.16 against 28.26, 1,200 ccc_chitchat pairs 12.11 against 12.04,
    the bundled prompts 71.92 against 71.58; beam-5 p50 15.9 ms against 13-15."""
    kth_best = sorted((h.score for h in found), reverse=True)[K - 1]
    return best_alive / penalty <= kth_best


def _best_first(hypotheses: list[Hypothesis]) -> list[Hypothesis]:
    return sorted((h._replace(ids=strip_ends(h.ids)) for h in hypotheses), key=lambda h: -h.score)
