from dataclasses import replace
from pathlib import Path

import pytest
import torch

from core_model.batching import collate, encode_pairs
from core_model.config import TrainConfig
from core_model.model import Seq2Seq
from core_model.tokenizer import PAD_ID, UNK_ID, Tokenizer
from core_model.training import (
    Callbacks,
    EvalStats,
    clipped_step,
    delete_tokens,
    make_optimizer,
    shuffle_tokens,
    train,
    train_step,
)
from tests.conftest import PAIRS, TINY_MODEL


def _model(tokenizer: Tokenizer) -> Seq2Seq:
    torch.manual_seed(0)
    return Seq2Seq(replace(TINY_MODEL, vocab_size=tokenizer.vocab_size))


def test_the_epoch_with_the_best_reply_score_is_kept(tokenizer: Tokenizer, tiny_train_config: TrainConfig) -> None:
    model = _model(tokenizer)
    examples = encode_pairs(PAIRS, tokenizer, model.config)
    scores = iter([1.0, 3.0, 2.0, 2.5])
    weights: list[dict[str, torch.Tensor]] = []
    evals: list[EvalStats] = []

    def score_replies(scored: Seq2Seq) -> float:
        assert not scored.training  # replies are generated in eval mode
        weights.append({name: tensor.clone() for name, tensor in scored.state_dict().items()})
        return next(scores)

    config = replace(tiny_train_config, max_steps=None, max_epochs=4, patience=10, select_by="reply_chrf")
    result = train(model, examples, examples, config, Callbacks(on_eval=evals.append, score_replies=score_replies))
    assert [e.improved for e in evals] == [True, True, False, False]
    assert [e.reply_chrf for e in evals] == [1.0, 3.0, 2.0, 2.5]
    assert result.valid_loss == evals[1].valid_loss  # the figures reported are the kept epoch's
    assert all(torch.equal(tensor, weights[1][name]) for name, tensor in model.state_dict().items())


def test_reply_scores_stop_training_after_patience(tokenizer: Tokenizer, tiny_train_config: TrainConfig) -> None:
    model = _model(tokenizer)
    examples = encode_pairs(PAIRS, tokenizer, model.config)
    config = replace(tiny_train_config, max_steps=None, max_epochs=50, patience=2, select_by="reply_chrf")
    result = train(model, examples, examples, config, Callbacks(score_replies=lambda _: 5.0))
    assert result.epochs == 3 and result.stopped_because == "early_stopping"  # one best, then two without gain


def test_fit_scores_epochs_by_the_chrf_of_greedy_replies(tmp_path: Path, tiny_train_config: TrainConfig) -> None:
    from core_model.pipeline import fit

    evals: list[EvalStats] = []
    config = replace(tiny_train_config, max_steps=None, max_epochs=3, select_by="reply_chrf")
    fit(PAIRS, PAIRS, TINY_MODEL, config, tmp_path / "m", Callbacks(on_eval=evals.append))
    assert len(evals) == 3 and all(e.reply_chrf is not None and 0 <= e.reply_chrf <= 100 for e in evals)


def test_fitted_models_remember_their_training_pairs(tmp_path: Path, tiny_train_config: TrainConfig) -> None:
    from core_model import checkpoint
    from core_model.pipeline import fine_tune, fit

    config = replace(tiny_train_config, max_steps=2)
    fit(PAIRS[:5], PAIRS[5:], TINY_MODEL, config, tmp_path / "base")
    base = checkpoint.load(tmp_path / "base").memory
    assert base is not None and base.prompts == [p.prompt for p in PAIRS[:5]]
    assert base.replies == [p.reply for p in PAIRS[:5]]
    fine_tune(tmp_path / "base", PAIRS[5:], PAIRS[:1], config, tmp_path / "tuned")
    tuned = checkpoint.load(tmp_path / "tuned").memory
    # its own training pairs only: pairs since erased from the logs do not live on from the base's
    assert tuned is not None and tuned.prompts == [p.prompt for p in PAIRS[5:]]
    assert tuned.nearest(PAIRS[6].prompt, 1)[0].reply == PAIRS[6].reply


def test_a_model_reads_context_once_it_or_its_base_learned_from_pairs_with_one(
        tmp_path: Path, tiny_train_config: TrainConfig) -> None:
    from core_model import checkpoint
    from core_model.batching import source_ids
    from core_model.pipeline import fine_tune, fit
    from core_model.serving import served_source

    config = replace(tiny_train_config, max_steps=2)
    with_context = [replace(PAIRS[0], context="good morning"), *PAIRS[1:5]]
    fit(PAIRS[:5], PAIRS[5:], TINY_MODEL, config, tmp_path / "plain")
    fit(with_context, PAIRS[5:], TINY_MODEL, config, tmp_path / "context")
    fine_tune(tmp_path / "context", PAIRS[5:], PAIRS[:1], config, tmp_path / "tuned")  # none of its own
    for name, reads in (("plain", False), ("context", True), ("tuned", True)):
        loaded = checkpoint.load(tmp_path / name)
        assert loaded.reads_context is reads
        assert loaded.metrics["context_pairs"] == (1 if reads else 0)
        # A model that never saw a context is served the prompt alone.
        expected = source_ids(loaded.tokenizer, "how are you", "hello there" if reads else "", loaded.model.config)
        assert served_source(loaded, "how are you", "hello there") == expected


def test_fit_can_remember_more_pairs_than_it_trains_on(tmp_path: Path, tiny_train_config: TrainConfig) -> None:
    from core_model import checkpoint
    from core_model.pipeline import fit
    from core_model.reply_memory import ReplyMemory

    fitted = fit(PAIRS[:5], PAIRS[5:], TINY_MODEL, replace(tiny_train_config, max_steps=2), tmp_path / "m",
                 memory=ReplyMemory.of(PAIRS))
    memory = checkpoint.load(tmp_path / "m").memory
    assert fitted.train_pairs == 5
    assert memory is not None and memory.prompts == [p.prompt for p in PAIRS]
    assert memory.nearest(PAIRS[6].prompt, 1)[0].reply == PAIRS[6].reply  # a validation pair


def test_source_token_dropout_hides_prompt_tokens_from_training_only(tokenizer: Tokenizer,
                                                                     tiny_train_config: TrainConfig) -> None:
    model = _model(tokenizer)
    examples = encode_pairs(PAIRS * 8, tokenizer, model.config)
    batch = collate(examples)
    seen: list[torch.Tensor] = []
    forward = model.forward

    def spy(src: torch.Tensor, *args: object, **kwargs: object) -> object:
        seen.append(src)
        return forward(src, *args, **kwargs)  # type: ignore[arg-type]

    model.forward = spy  # type: ignore[method-assign]
    optimizer = make_optimizer(model, tiny_train_config)
    torch.manual_seed(0)
    train_step(model, optimizer, batch, replace(tiny_train_config, source_token_dropout=0.3), bf16=False)
    train_step(model, optimizer, batch, tiny_train_config, bf16=False)
    dropped, untouched = seen
    real = batch.src != PAD_ID
    hidden = (dropped == UNK_ID) & real
    assert 0.15 < hidden.sum() / real.sum() < 0.45  # about the share asked for
    assert torch.equal(dropped[~hidden], batch.src[~hidden])  # padding and the rest are kept
    assert torch.equal(untouched, batch.src)  # with no dropout the prompt is read as it is


def test_token_deletion_shortens_prompts_and_keeps_the_order_of_what_is_left() -> None:
    torch.manual_seed(0)
    src = torch.tensor([list(range(10, 30)), [40, 41, 42] + [PAD_ID] * 17, [50] + [PAD_ID] * 19])
    closed, lengths = delete_tokens(src, 0.5)
    assert lengths.tolist()[2] == 1 and closed.size(1) == int(lengths.max())  # a row keeps its first token
    for row, original, length in zip(closed.tolist(), src.tolist(), lengths.tolist(), strict=True):
        kept = row[:length]
        assert kept[0] == original[0] and all(token != PAD_ID for token in kept)
        assert kept == [token for token in original if token in kept]  # a subsequence, in order
        assert all(token == PAD_ID for token in row[length:])
    assert 6 <= int(lengths[0]) <= 14  # about half of the 20 tokens deleted


def test_token_shuffle_moves_each_token_a_few_places_and_keeps_the_padding_at_the_end() -> None:
    torch.manual_seed(0)
    src = torch.tensor([list(range(10, 30)), [40, 41, 42] + [PAD_ID] * 17])
    shuffled = shuffle_tokens(src, 3)
    assert not torch.equal(shuffled, src)
    for row, original in zip(shuffled.tolist(), src.tolist(), strict=True):
        assert sorted(row) == sorted(original)  # the same tokens
        assert all(abs(row.index(token) - place) <= 3 for place, token in enumerate(original) if token != PAD_ID)
    assert shuffled[1, 3:].eq(PAD_ID).all()


def test_a_budget_that_ends_with_an_epoch_evaluates_no_empty_epoch(tokenizer: Tokenizer,
                                                                   tiny_train_config: TrainConfig) -> None:
    model = _model(tokenizer)
    examples = encode_pairs(PAIRS, tokenizer, model.config)  # one batch: one step an epoch
    evals: list[EvalStats] = []
    config = replace(tiny_train_config, max_steps=3, max_epochs=100, patience=100)
    result = train(model, examples, examples, config, Callbacks(on_eval=evals.append))
    assert (result.steps, result.epochs, result.stopped_because) == (3, 3, "budget")
    assert [e.epoch for e in evals] == [1, 2, 3]


def test_with_a_moving_average_the_averaged_weights_are_scored_and_kept(
        tokenizer: Tokenizer, tiny_train_config: TrainConfig) -> None:
    model = _model(tokenizer)
    start = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    examples = encode_pairs(PAIRS, tokenizer, model.config)
    scored_weights: list[dict[str, torch.Tensor]] = []

    def score_replies(scored: Seq2Seq) -> float:
        scored_weights.append({name: tensor.clone() for name, tensor in scored.state_dict().items()})
        return float(len(scored_weights))  # every epoch is better: the last one is kept

    config = replace(tiny_train_config, max_steps=None, max_epochs=4, patience=10, select_by="reply_chrf",
                     ema_decay=0.9)
    train(model, examples, examples, config, Callbacks(score_replies=score_replies))
    kept = model.state_dict()
    assert all(torch.equal(kept[name], scored_weights[-1][name]) for name in kept)
    # An average of 0.9 leans on the earlier weights: it lies between the start and the last step's.
    name = "combine.weight"
    moved_by_average = (kept[name] - start[name]).norm()
    assert moved_by_average > 0
    trained_alone = _model(tokenizer)
    epochs = iter(range(10))
    train(trained_alone, examples, examples, replace(config, ema_decay=0.0),
          Callbacks(score_replies=lambda _: float(next(epochs))))  # the last epoch is kept here too
    assert moved_by_average < (trained_alone.state_dict()[name] - start[name]).norm()


@pytest.mark.parametrize(("setting", "value"), [
    ("batch_size", 0), ("learning_rate", 0.0), ("label_smoothing", 1.0), ("ema_decay", -0.1), ("max_steps", 0),
    ("max_seconds", -1.0), ("threads", 0), ("patience", 0), ("min_lr_ratio", 1.5), ("grad_clip", float("nan")),
    ("select_by", "luck")])
def test_training_settings_out_of_range_are_refused_by_name(setting: str, value: object) -> None:
    with pytest.raises(ValueError, match=setting):
        replace(TrainConfig(), **{setting: value})
    assert replace(TrainConfig(), max_steps=None, max_seconds=None, threads=None).max_steps is None  # unset


@pytest.mark.parametrize("max_norm", [1e-3, 1e3])  # clipped, and not
def test_the_fused_optimizer_clips_as_clip_grad_norm_does(tokenizer: Tokenizer, max_norm: float) -> None:
    batch = collate(encode_pairs(PAIRS[:8], tokenizer, TINY_MODEL))
    weights = []
    for fused in (True, False):
        model = _model(tokenizer)
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, fused=fused)
        for _ in range(3):
            optimizer.zero_grad()
            _, loss = model(batch.src, batch.src_lengths, batch.tgt_in, batch.targets)
            assert loss is not None
            loss.backward()
            clipped_step(model, optimizer, max_norm)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.allclose(weights[0], weights[1], rtol=1e-4, atol=1e-6)
    assert not torch.equal(weights[0], torch.cat([p.detach().flatten() for p in _model(tokenizer).parameters()]))
