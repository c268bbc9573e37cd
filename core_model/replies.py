"""From source ids to reply texts: decoding, then (for beam search) the choice among the n-best."""

from __future__ import annotations

from collections.abc import Sequence

from core_model.config import DecodeConfig
from core_model.decoding import candidates, generate
from core_model.model import Seq2Seq
from core_model.reranking import consensus
from core_model.tokenizer import Tokenizer


def reply_texts(model: Seq2Seq, tokenizer: Tokenizer, sources: Sequence[Sequence[int]],
                config: DecodeConfig) -> list[str]:
    """One reply text per source; an empty source gets an empty reply (see decoding)."""
    if config.strategy == "beam" and config.beam_width > 1 and config.rerank == "consensus":
        replies = []
        for hypotheses in candidates(model, sources, config):
            texts = [tokenizer.decode(ids) for _, ids in hypotheses]
            replies.append(texts[consensus(texts, [score for score, _ in hypotheses])] if texts else "")
        return replies
    return [tokenizer.decode(ids) for ids in generate(model, sources, config)]
