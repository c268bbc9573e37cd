from dataclasses import replace
from pathlib import Path

import torch

from core_model.batching import encode_pairs
from core_model.config import TrainConfig
from core_model.model import Seq2Seq
from core_model.tokenizer import Tokenizer
from core_model.training import Callbacks, EvalStats, train
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
