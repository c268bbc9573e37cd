"""From source ids to reply texts: decoding, then (for beam search) the choice among the n-best.

With the memory of training pairs, each prompt's nearest training prompts are looked up once, by
their characters and, when the memory holds the prompts' vectors, by the vector of the prompt's
encoding (core_model/prompt_vectors.py), the encoding the decoding then starts from (a prompt
after a context is encoded alone for its vector, as the memory's prompts were). Their replies
guide the decoding (config.neighbour_share, core_model/guidance.py) and choose among beam search's
candidates (rerank="neighbours", core_model/reranking.py). A prompt with no neighbour at all (not
one character in common) gets an empty reply.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np

from core_model.config import DecodeConfig
from core_model.decoding import (
    Encoded,
    candidates,
    candidates_as_done,
    encode,
    generate_as_done,
    reply_limit,
)
from core_model.guidance import Guide, guide
from core_model.model import Seq2Seq
from core_model.prompt_vectors import start_vectors
from core_model.reply_memory import Neighbour, ReplyMemory
from core_model.reranking import NEIGHBOURS, closest_to_neighbours, consensus
from core_model.search_steps import Hypothesis
from core_model.tokenizer import SEP_ID, Tokenizer

# Where a sentence ends: its mark, then a space or the end of the text.
_SENTENCE_END = re.compile(r"[.!?。！？…~](?=\s|$)")


def reply_texts(model: Seq2Seq, tokenizer: Tokenizer, sources: Sequence[Sequence[int]],
                config: DecodeConfig, memory: ReplyMemory | None = None) -> list[str]:
    """One reply text per source; an empty source gets an empty reply (see decoding), and so does a
    prompt the memory shares no character with."""
    texts = [""] * len(sources)
    for finished in reply_texts_as_done(model, tokenizer, sources, config, memory):
        for index, text in finished:
            texts[index] = text
    return texts


def reply_texts_as_done(model: Seq2Seq, tokenizer: Tokenizer, sources: Sequence[Sequence[int]],
                        config: DecodeConfig, memory: ReplyMemory | None = None) -> Iterator[list[tuple[int, str]]]:
    """reply_texts() as (index of the source, reply) pairs, handed over at the decoding step
    where each reply is complete rather than when the whole batch is. memory: the training pairs
    whose replies guide the decoding and rerank="neighbours" consults, and which tell the prompts
    the model knows nothing of (without it, decoding is unguided, every prompt is answered, and
    that reranking falls back to consensus)."""
    # beam search whose reply is chosen among its n-best (rather than the most probable one)
    reranked = config.strategy == "beam" and config.beam_width > 1 and config.rerank != "none"
    neighbours = encoded = None
    if memory is not None and memory.prompts:
        # The prompts are encoded first: their vectors help find the nearest training prompts
        # (core_model/reply_memory.py), and the decoding starts from the same encoding.
        encoded = encode(model, sources) if memory.has_vectors and any(sources) else None
        neighbours = memory.nearest_each([_prompt(tokenizer, source) for source in sources], NEIGHBOURS,
                                         _vectors(model, encoded, sources))
        # A prompt that shares not one character with those the model learned from (a script or an
        # emoji it never saw) gets an empty reply, as an empty prompt does: the model's reply to it
        # was noise ("你好" got "저" and "مرحبا" "저는 돈이 필요 없습니다." from the default model).
        answered = [source if found else [] for source, found in zip(sources, neighbours, strict=True)]
        if encoded is not None and sum(map(bool, answered)) < sum(map(bool, sources)):
            encoded = encode(model, answered) if any(answered) else None  # rare: encoded again without them
        sources = answered
    guides = [guide(tokenizer, n) for n in neighbours] if neighbours and config.neighbour_share > 0 else None
    limit = reply_limit(model, config)
    if not reranked:
        for done in generate_as_done(model, sources, config, guides, encoded):
            yield [(index, reply_text(tokenizer, ids, limit)) for index, ids in done]
        return
    if config.rerank == "neighbours" and neighbours is not None:
        yield from _closest_to_neighbours(model, tokenizer, sources, config, neighbours, guides, encoded)
        return
    for finished in candidates_as_done(model, sources, config, guides, encoded):
        yield [(index, _consensus_text(tokenizer, hypotheses, limit)) for index, hypotheses in finished]


def reply_text(tokenizer: Tokenizer, ids: Sequence[int], limit: int) -> str:
    """The text of a reply's ids. A reply of limit tokens was cut there, still being written: it is
    trimmed back to its last sentence end, or else to its last whole word followed by "…", so
    that it never stops mid-word (the bundled corpus's answers with code run to 367 tokens)."""
    text = tokenizer.decode(ids)
    if len(ids) < limit:
        return text
    ends = [match.end() for match in _SENTENCE_END.finditer(text)]
    if ends:
        return text[: ends[-1]]
    last_space = text.rfind(" ")
    return f"{text[:last_space].rstrip()}…" if last_space > 0 else text


def _consensus_text(tokenizer: Tokenizer, hypotheses: list[Hypothesis], limit: int) -> str:
    texts = [reply_text(tokenizer, h.ids, limit) for h in hypotheses]
    return texts[consensus(texts, [h.score for h in hypotheses])] if texts else ""


def _closest_to_neighbours(model: Seq2Seq, tokenizer: Tokenizer, sources: Sequence[Sequence[int]],
                           config: DecodeConfig, neighbours: list[list[Neighbour]],
                           guides: list[Guide] | None, encoded: Encoded | None) -> Iterator[list[tuple[int, str]]]:
    # Greedy's reply joins the n-best: it is sometimes a better reply than any beam finds (held-out
    # Korean, see reranking). Both searches start from one run of the encoder. Greedy's reply is
    # almost always one of beam search's own (for all 200 Korean validation prompts tried, and 198
    # of 200 bundled ones with the default model), and then has its score there; only otherwise is
    # a search of width 1 run for its score. Greedy decoding itself is cheap (it takes the tokens
    # the guides bind without the output layer): the same replies as when greedy's reply always came
    # with its score, and beam-5 replies one at a time 6-10% faster (default model 18.9-19.5 ms
    # against 20.3-20.5 at the median, Korean 11.2 against 11.9-12.2, English chat 37.8 against 42.1).
    encoded = encoded or (encode(model, sources) if any(sources) else None)
    greedy: list[list[int]] = [[] for _ in sources]
    for done in generate_as_done(model, sources, replace(config, strategy="greedy"), guides, encoded):
        for index, ids in done:
            greedy[index] = ids
    limit = reply_limit(model, config)
    for finished in candidates_as_done(model, sources, config, guides, encoded):
        chosen = []
        for index, hypotheses in finished:
            found: dict[str, Hypothesis] = {}
            for hypothesis in hypotheses:
                found.setdefault(reply_text(tokenizer, hypothesis.ids, limit), hypothesis)
            if sources[index] and reply_text(tokenizer, greedy[index], limit) not in found:
                alone = candidates(model, [sources[index]], replace(config, beam_width=1),
                                   [guides[index]] if guides is not None else None)[0]
                for hypothesis in alone:
                    found.setdefault(reply_text(tokenizer, hypothesis.ids, limit), hypothesis)
            texts = list(found)
            # Each candidate's score in the search that found it (the guided mixture's log-probability,
            # length-normalised), not the model's own: a guided reply follows a neighbour's reply where
            # the model alone found it improbable, and any free continuation the model wrote after it
            # raised the model's own mean log-probability per token ("See you!" became "See you! Teots
            # youe" with the default model).
            scores = [h.score for h in found.values()]
            chosen.append((index, texts[closest_to_neighbours(texts, scores, neighbours[index])] if texts else ""))
        yield chosen


def _vectors(model: Seq2Seq, encoded: Encoded | None, sources: Sequence[Sequence[int]]) -> list[np.ndarray | None]:
    """Each source's vector (core_model/prompt_vectors.py) from its encoding; None when not encoded
    and for an empty source or prompt. The memory's vectors are of prompts alone, so the prompts of
    sources with a context before them are encoded alone too, all in one more run of the encoder:
    in a chat, where most messages have the turn before as their context, their neighbours are
    then ranked as the same prompts' are without it. On 150 such pairs held out of the bundled
    corpus (a default model trained on the rest), chrF 12.78 against 12.40 by characters alone,
    and 13.67 against 12.54 on another 150;
    the encoding costs 0.45 ms a prompt, and a batch of the two kinds of source encoded together
    took longer than two batches."""
    if encoded is None:
        return [None] * len(sources)
    rows = iter(start_vectors(encoded.state).numpy())  # one per non-empty source, in order
    vectors: list[np.ndarray | None] = [next(rows) if source else None for source in sources]
    after_context = [i for i, source in enumerate(sources) if SEP_ID in source]
    prompts = [_prompt_ids(sources[i]) for i in after_context]
    alone = iter(start_vectors(encode(model, prompts).state).numpy()) if any(prompts) else iter(())
    for i, prompt in zip(after_context, prompts, strict=True):
        vectors[i] = next(alone) if prompt else None
    return vectors


def _prompt_ids(source: Sequence[int]) -> list[int]:
    """The prompt's ids in the encoder's input (context <sep> prompt)."""
    ids = list(source)
    return ids[len(ids) - ids[::-1].index(SEP_ID) :] if SEP_ID in ids else ids


def _prompt(tokenizer: Tokenizer, source: Sequence[int]) -> str:
    """The prompt's text from the encoder's input (context <sep> prompt)."""
    return tokenizer.decode(_prompt_ids(source))
