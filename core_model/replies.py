"""From source ids to reply texts: decoding, then (for beam search) the choice among the n-best."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from core_model.config import DecodeConfig
from core_model.decoding import candidates_as_done, generate_as_done
from core_model.model import Seq2Seq
from core_model.reranking import consensus
from core_model.tokenizer import Tokenizer


def reply_texts(model: Seq2Seq, tokenizer: Tokenizer, sources: Sequence[Sequence[int]],
                config: DecodeConfig) -> list[str]:
    """One reply text per source; an empty source gets an empty reply (see decoding)."""
    texts = [""] * len(sources)
    for finished in reply_texts_as_done(model, tokenizer, sources, config):
        for index, text in finished:
            texts[index] = text
    return texts


def reply_texts_as_done(model: Seq2Seq, tokenizer: Tokenizer, sources: Sequence[Sequence[int]],
                        config: DecodeConfig) -> Iterator[list[tuple[int, str]]]:
    """reply_texts() as (index of the source, reply) pairs, handed over at the decoding step
    where each reply is complete rather than when the whole batch is."""
    if config.strategy == "beam" and config.beam_width > 1 and config.rerank == "consensus":
        for finished in candidates_as_done(model, sources, config):
            yield [(index, _consensus_text(tokenizer, hypotheses)) for index, hypotheses in finished]
        return
    for done in generate_as_done(model, sources, config):
        yield [(index, tokenizer.decode(ids)) for index, ids in done]


def _consensus_text(tokenizer: Tokenizer, hypotheses: list[tuple[float, list[int]]]) -> str:
    texts = [tokenizer.decode(ids) for _, ids in hypotheses]
    return texts[consensus(texts, [score for score, _ in hypotheses])] if texts else ""
