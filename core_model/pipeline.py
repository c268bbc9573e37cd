"""Train a model folder from pairs: tokenizer, encoding, training loop, best-checkpoint saving."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from core_model import checkpoint
from core_model.batching import encode_pairs, make_batches, prompt_text, source_ids
from core_model.config import DecodeConfig, ModelConfig, TrainConfig
from core_model.corpora import Pair
from core_model.metrics import chrf
from core_model.model import Seq2Seq
from core_model.replies import reply_texts
from core_model.reply_memory import ReplyMemory
from core_model.spelling import token_spellings
from core_model.tokenizer import Tokenizer
from core_model.training import NO_CALLBACKS, Callbacks, TrainResult, TrainState, evaluate, train


@dataclass(frozen=True)
class FitResult:
    out: Path
    train_pairs: int
    valid_pairs: int
    result: TrainResult
    trained_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    # Training pairs that carried a context (the turn before the prompt), this model's and its base's:
    # a model that learned from none is served without context (checkpoint.LoadedModel.reads_context).
    context_pairs: int = 0

    def metrics(self) -> dict[str, Any]:
        return {"train_pairs": self.train_pairs, "valid_pairs": self.valid_pairs,
                "context_pairs": self.context_pairs, "trained_at": self.trained_at, **asdict(self.result)}


def split_validation(pairs: Sequence[Pair], share: float = 0.05, seed: int = 0) -> tuple[list[Pair], list[Pair]]:
    """A seeded hold-out for when no validation file is given."""
    shuffled = list(pairs)
    random.Random(seed).shuffle(shuffled)
    n_valid = max(1, int(len(shuffled) * share)) if len(shuffled) > 1 else 0
    return shuffled[n_valid:], shuffled[:n_valid]


def fit(
    train_pairs: Sequence[Pair],
    valid_pairs: Sequence[Pair],
    model_config: ModelConfig,
    train_config: TrainConfig,
    out: Path,
    callbacks: Callbacks = NO_CALLBACKS,
    resume: bool = False,
    memory: ReplyMemory | None = None,
) -> FitResult:
    """Train from scratch (or resume from out/), saving the best weights to out/ after every epoch.

    memory: the pairs the model folder's memory offers replies from (the training pairs unless
    given). Validation pairs split off the training data choose the epoch, and are then as much the
    bot's to answer from as the rest: the memory takes them all (a prompt of the bundled small talk
    that fell to the validation share was otherwise answered by some other pair)."""
    out = Path(out)
    state: TrainState | None = None
    if resume and (out / checkpoint.TRAIN_STATE).exists():
        loaded = checkpoint.load(out)
        model, tokenizer = loaded.model, loaded.tokenizer
        state = TrainState(**checkpoint.load_train_state(out / checkpoint.TRAIN_STATE))
    else:
        texts = (text for p in train_pairs
                 for text in (prompt_text(p.prompt, model_config), p.reply, prompt_text(p.context, model_config)))
        tokenizer = Tokenizer.train(texts, vocab_size=model_config.vocab_size)
        model = new_model(model_config, tokenizer)
    return _train_into(out, model, tokenizer, train_pairs, valid_pairs, train_config, callbacks, state,
                       memory, context_pairs=0)


def new_model(config: ModelConfig, tokenizer: Tokenizer) -> Seq2Seq:
    """An untrained model shaped for config and a freshly trained tokenizer (its vocabulary, and
    the spelling of its tokens when the prompt embedding uses it)."""
    config = replace(config, vocab_size=tokenizer.vocab_size)
    if not config.prompt_spelling:
        return Seq2Seq(config)
    table, count = token_spellings(tokenizer, config.prompt_spelling)
    model = Seq2Seq(replace(config, prompt_spelling=count))
    model.set_token_spellings(table)
    return model


def fine_tune(base: Path, train_pairs: Sequence[Pair], valid_pairs: Sequence[Pair], train_config: TrainConfig,
              out: Path, callbacks: Callbacks = NO_CALLBACKS, memory: ReplyMemory | None = None) -> FitResult:
    """Continue training the model folder `base` on new pairs (same tokenizer and shape) into out/.

    memory: as for fit(). A retrain gives it the active model's base pairs and the chats' pairs as
    the logs hold them now (ReplyMemory.with_learned), so that what a person had erased (/forget)
    is not carried over."""
    loaded = checkpoint.load(base)
    return _train_into(Path(out), loaded.model, loaded.tokenizer, train_pairs, valid_pairs, train_config,
                       callbacks, None, memory, context_pairs=int(loaded.metrics.get("context_pairs", 0)))


def bits_per_char(model_dir: Path, pairs: Sequence[Pair], batch_size: int = 64) -> float:
    """Validation NLL of a model folder on pairs, in bits per reply character (comparable across tokenizers)."""
    loaded = checkpoint.load(model_dir)
    examples = encode_pairs(pairs, loaded.tokenizer, loaded.model.config)
    with torch.inference_mode():
        return evaluate(loaded.model, make_batches(examples, batch_size, shuffle=False))[1]


SCORED_PROMPTS = 500  # enough for a stable chrF, a second or so of greedy decoding per epoch


def _reply_scorer(tokenizer: Tokenizer, config: ModelConfig,
                  valid_pairs: Sequence[Pair]) -> Callable[[Seq2Seq], float] | None:
    """chrF of the model's greedy replies to (the first) validation prompts."""
    pairs = [pair for pair in valid_pairs[:SCORED_PROMPTS] if pair.prompt.strip()]
    if not pairs:
        return None
    greedy = DecodeConfig(strategy="greedy")
    references = [pair.reply for pair in pairs]
    sources = [source_ids(tokenizer, p.prompt, p.context, config) for p in pairs]

    def score(model: Seq2Seq) -> float:
        replies: list[str] = []
        for start in range(0, len(sources), 64):
            replies += reply_texts(model, tokenizer, sources[start : start + 64], greedy)
        return chrf(replies, references)

    return score


def _train_into(out: Path, model: Seq2Seq, tokenizer: Tokenizer, train_pairs: Sequence[Pair],
                valid_pairs: Sequence[Pair], train_config: TrainConfig, callbacks: Callbacks,
                state: TrainState | None, memory: ReplyMemory | None, context_pairs: int) -> FitResult:
    """memory: saved with the model (a memory of the training pairs when None). context_pairs:
    those the model had learned from before (a fine-tuned base's)."""
    config = model.config
    train_examples = encode_pairs(train_pairs, tokenizer, config)
    valid_examples = encode_pairs(valid_pairs, tokenizer, config)
    memory = memory if memory is not None else ReplyMemory.of(train_pairs)

    def save_best(best: Seq2Seq, progress: TrainState) -> None:
        checkpoint.save(out, best, tokenizer, {"train_pairs": len(train_examples), "epoch": progress.epoch,
                                               "valid_loss": progress.best_valid_loss,
                                               "valid_bits_per_char": progress.best_bits_per_char},
                        memory=memory)
        checkpoint.save_train_state(out / checkpoint.TRAIN_STATE, asdict(progress))
        if callbacks.on_epoch_end:
            callbacks.on_epoch_end(best, progress)

    # the replies are scored only when they choose the epoch kept
    scorer = _reply_scorer(tokenizer, config, valid_pairs) if train_config.select_by == "reply_chrf" else None
    result = train(model, train_examples, valid_examples, train_config,
                   replace(callbacks, on_epoch_end=save_best, score_replies=scorer), state)
    fitted = FitResult(out, len(train_examples), len(valid_examples), result,
                       context_pairs=context_pairs + sum(bool(p.context) for p in train_pairs))
    checkpoint.save(out, model, tokenizer, fitted.metrics(), memory=memory)
    return fitted
