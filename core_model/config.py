"""Typed configuration shared by every module of core_model; derive variants with dataclasses.replace."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

Cell = Literal["gru", "lstm"]
AttentionScore = Literal["general", "dot", "additive"]
Strategy = Literal["greedy", "beam", "sample"]
Rerank = Literal["none", "consensus", "neighbours"]
Selection = Literal["valid_loss", "reply_chrf"]


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the encoder-decoder network; saved as config.json next to the weights."""

    vocab_size: int = 8000
    embedding_dim: int = 256
    hidden_size: int = 512  # encoder output size (split across the two directions) and decoder size
    num_layers: int = 2
    cell: Cell = "gru"
    attention: AttentionScore = "general"
    dropout: float = 0.2
    max_source_tokens: int = 64  # longer inputs keep their last tokens (the most recent words)
    max_target_tokens: int = 48
    # The encoder reads prompts (and context) lowercased: people type "hello" as often as "Hello",
    # and to a cased vocabulary the two share no token. Replies keep their case.
    lowercase_prompts: bool = False
    # Spelling units (characters and character pairs) the prompt embedding knows
    # (core_model/spelling.py): each prompt token's embedding gets the mean embedding of its units
    # added. 0: subword embeddings only. Training sets it to the number of units found in the
    # vocabulary, at most this.
    prompt_spelling: int = 0

    def __post_init__(self) -> None:
        """Raises ValueError naming the first setting out of its range."""
        _check(self, at_least={"vocab_size": 1, "embedding_dim": 1, "hidden_size": 2, "num_layers": 1,
                               "max_source_tokens": 1, "max_target_tokens": 2, "prompt_spelling": 0},
               shares=("dropout",))
        if self.hidden_size % 2:
            raise ValueError("hidden_size must be even (it is split across the two encoder directions)")
        _check_choices(self, cell=Cell, attention=AttentionScore)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model settings: {', '.join(sorted(unknown))}")
        return cls(**data)


@dataclass(frozen=True)
class TrainConfig:
    """How to train: batch, schedule, budget, regularisation and numerics."""

    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    min_lr_ratio: float = 0.05  # cosine decay ends at this share of the peak rate
    label_smoothing: float = 0.1
    # Share of prompt tokens replaced by <unk> in each training batch: the encoder cannot lean on
    # any single token, so a prompt worded differently from the ones trained on reads alike.
    source_token_dropout: float = 0.0
    # Share of prompt tokens deleted outright (the prompt gets shorter): a paraphrase often drops
    # or adds words rather than changing them in place.
    source_token_deletion: float = 0.0
    # How far a prompt token may move when the prompt is locally shuffled (0: never): the same
    # words in another order (Korean word order is free) should read alike.
    source_token_shuffle: int = 0
    grad_clip: float = 1.0
    # Decay of an exponential moving average of the weights, which is what each epoch evaluates and
    # keeps; 0 evaluates the trained weights themselves.
    ema_decay: float = 0.0
    max_epochs: int = 100
    max_steps: int | None = None
    max_seconds: float | None = None
    patience: int = 3  # epochs without a better validation score before stopping
    # Which epoch's weights are best: the lowest validation loss, or the highest chrF of greedy
    # replies to validation prompts (reply quality can go on rising after the loss turns up).
    select_by: Selection = "valid_loss"
    bf16: bool | None = None  # None: use bf16 autocast when the CPU has native bf16 support
    threads: int | None = None
    seed: int = 1234

    def __post_init__(self) -> None:
        """Raises ValueError naming the first setting out of its range (None: no limit, or the default)."""
        _check(self, at_least={"batch_size": 1, "weight_decay": 0, "warmup_steps": 0, "min_lr_ratio": 0,
                               "source_token_shuffle": 0, "max_epochs": 1, "max_steps": 1, "patience": 1,
                               "threads": 1},
               above={"learning_rate": 0, "grad_clip": 0, "max_seconds": 0},
               shares=("label_smoothing", "source_token_dropout", "source_token_deletion", "ema_decay"))
        if self.min_lr_ratio > 1:
            raise ValueError(f"min_lr_ratio must be at most 1, not {self.min_lr_ratio}")
        _check_choices(self, select_by=Selection)


@dataclass(frozen=True)
class DecodeConfig:
    """How replies are generated from the model's distributions."""

    # Greedy decoding guided by the replies of the nearest training prompts (core_model/guidance.py).
    # Beam search of 5, guided so and reranked by agreement with those replies (with greedy's reply
    # among its candidates), takes three times as long and scored no better, both at neighbour
    # share 0.5: on 600 pairs held out of the Korean train.tsv (a model trained 600 s on the rest),
    # 28.02 against 28.03 for greedy; on the Korean valid.tsv, 27.08 against 27.92 with that model, 28.11 against 28.43 and 28.19
    # against 29.11 with two trained on all of train.tsv, and greedy scored higher for 21 of the 23
    # epochs of one training run; on ccc_chitchat's valid.tsv, 11.76 against 12.13. The better the
    # model, the more greedy gained: beam search's reranking held its reply near the neighbours'
    # whatever the model. Greedy decoding alone (no neighbours) scores 15-18 on Korean.
    strategy: Strategy = "greedy"
    beam_width: int = 5
    length_penalty: float = 1.0  # GNMT alpha: 0 favours short replies, larger favours longer
    min_length: int = 1
    # As long as the default models were trained to write (max_target_tokens): at 40, ccc_chitchat
    # replies were cut mid-sentence, and chrF was 11.60 against 11.77 at 48 (Korean is unchanged,
    # its replies being shorter). Decoding never runs past the model's max_target_tokens.
    max_length: int = 48
    no_repeat_ngram: int = 3  # 0 disables blocking of repeated n-grams within a reply
    block_prompt_ngram: int = 0  # n-grams of the prompt the reply may not copy; 0 disables
    # Beam search's choice among its n-best (core_model/reranking.py). "neighbours" needs the model
    # folder's memory of training pairs and falls back to "consensus" without one.
    rerank: Rerank = "neighbours"
    # Share of each next-token distribution given to continuing the replies of the nearest training
    # prompts (core_model/guidance.py); 0: the model's distribution alone. Needs the memory of
    # training pairs, like rerank="neighbours". With greedy decoding, 0.6 scored chrF 28.30 against
    # 28.03 for 0.5 and for 0.7 on the 600 held-out Korean pairs; on valid.tsv, 28.76 against 28.43
    # and 28.40 with one model, 29.10 against 29.11 and 28.96 with another; on ccc_chitchat's,
    # 12.11 against 12.13 for 0.5 (5 neighbours instead of 3 scored the same). Beam search was
    # tuned at 0.5.
    neighbour_share: float = 0.6
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        """Raises ValueError naming the first setting out of its range."""
        _check_choices(self, strategy=Strategy, rerank=Rerank)
        # a neighbour_share of 1 would make a reply that no neighbour continues impossible
        _check(self, at_least={"beam_width": 1, "max_length": 1, "min_length": 0, "no_repeat_ngram": 0,
                               "block_prompt_ngram": 0, "top_k": 0, "length_penalty": 0},
               above={"temperature": 0, "top_p": 0}, shares=("neighbour_share",))
        if self.top_p > 1:
            raise ValueError(f"top_p must be at most 1, not {self.top_p}")


def _check_choices(config: object, **choices: Any) -> None:
    """Raise ValueError naming the first setting of config that is not one of its Literal's values."""
    for name, literal in choices.items():
        value, allowed = getattr(config, name), get_args(literal)
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")


def _check(config: object, at_least: dict[str, float] | None = None, above: dict[str, float] | None = None,
           shares: tuple[str, ...] = ()) -> None:
    """Raise ValueError naming the first setting of config out of its range: below its lowest value
    (at_least), not above its bound (above), or not a share (at least 0 and below 1). A setting
    that is None (unset) is not checked; NaN is refused (hence "not value >= lowest")."""
    for name, lowest in (at_least or {}).items():
        value = getattr(config, name)
        if value is not None and not value >= lowest:
            raise ValueError(f"{name} must be at least {lowest}, not {value}")
    for name, bound in (above or {}).items():
        value = getattr(config, name)
        if value is not None and not value > bound:
            raise ValueError(f"{name} must be above {bound}, not {value}")
    for name in shares:
        value = getattr(config, name)
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be at least 0 and below 1, not {value}")
