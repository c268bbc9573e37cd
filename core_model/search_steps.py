"""What every search over the decoder's next-token distributions shares: the scores a next token
is chosen by (constraints and the guides' mixture, see core_model/decoding.py), the hypotheses
beam search finds and how they are length-normalised, and picking a batch's rows of a state."""

from __future__ import annotations

from typing import NamedTuple, TypeVar

import torch
from torch import Tensor

from core_model.config import DecodeConfig
from core_model.guidance import GuideRows
from core_model.model import State, _map_state
from core_model.tokenizer import EOS_ID, PAD_ID, SPECIAL_TOKENS

NEG_INF = float("-inf")


NEVER = torch.tensor([i for i in range(len(SPECIAL_TOKENS)) if i != EOS_ID])  # <pad> <go> <unk> <sep>


class Hypothesis(NamedTuple):
    """One reply found by beam search."""

    score: float  # the search's: length-normalised log-probability (of the guided mixture if guided)
    ids: list[int]  # without <go> or <eos>


def next_scores(scores: Tensor, guides: GuideRows | None, generated: Tensor, prompts: Tensor,
                 config: DecodeConfig) -> Tensor:
    """The scores [R, V] that choose the next token: the model's (log-probabilities when guided),
    the n-grams the reply may not repeat and those of the prompt blocked, the guides' pull mixed
    in, then the special tokens and an early <eos> forbidden. scores is changed in place.

    The blocking applies to the model's own distribution only: a neighbour's reply may repeat
    itself (a joke's refrain), and the reply following it may too. Blocked after the mixture, the
    default model cut the bundled joke '노인 "…" 의사 "10" 노인 "10?"" 의사 "9"' at its second '" 의사 "'
    and wrote '의pol사람' instead.
    generated [R, t] (the reply so far), prompts [R, S] (each row's source).
    """
    t = generated.size(1)
    for n, history in ((config.no_repeat_ngram, generated), (config.block_prompt_ngram, prompts)):
        if n <= 0 or t < n - 1 or history.size(1) < n:
            continue
        windows = history.unfold(1, n, 1)  # [R, W, n]
        prefix = generated[:, t - (n - 1) :]  # [R, n-1]
        match = (windows[:, :, :-1] == prefix.unsqueeze(1)).all(dim=-1)  # [R, W]
        rows, cols = match.nonzero(as_tuple=True)
        scores[rows, windows[rows, cols, -1]] = NEG_INF
    if guides is not None:
        scores = guides.mix(scores, config.neighbour_share)
    scores.index_fill_(1, NEVER, NEG_INF)  # a fifth of the time of indexing with a list
    if t < config.min_length:
        scores[:, EOS_ID] = NEG_INF
    return scores


def choice_scores(logits: Tensor, guides: GuideRows | None, generated: Tensor, prompts: Tensor,
                   config: DecodeConfig) -> Tensor:
    """next_scores() for greedy decoding and sampling, from the model's logits [R, V]. The
    mixture's log-probabilities serve as its logits. Once no reply follows a neighbour's, the
    mixture is the model's distribution, which its logits give as they are."""
    if guides is not None and guides.active:
        logits = torch.log_softmax(logits, dim=-1)
    return next_scores(logits, guides, generated, prompts, config)


def strip_ends(row: list[int]) -> list[int]:
    for end, token in enumerate(row):
        if token in (EOS_ID, PAD_ID):
            return row[:end]
    return row


def select_rows(state: State, index: Tensor) -> State:
    """Batch rows of an RNN state [L, B, H] picked by index (to follow beams)."""
    return _map_state(state, lambda s: s.index_select(1, index))


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's ((5 + length) / 6) ** alpha: scores are divided by it, so alpha > 0 favours longer replies."""
    return ((5 + length) / 6) ** alpha


Result = TypeVar("Result", list[int], list[Hypothesis])
# What finished at one step of a search: (index of the source, its result) pairs.
Finished = list[tuple[int, Result]]
