"""The training loop: AdamW, warm-up then cosine decay, clipping, early stopping; I/O via callbacks."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.optim.swa_utils import AveragedModel

from core_model.batching import Batch, Example, make_batches
from core_model.config import TrainConfig
from core_model.model import Seq2Seq
from core_model.numerics import autocast, keep_freed_memory, use_bf16
from core_model.tokenizer import PAD_ID, UNK_ID


@dataclass(frozen=True)
class StepStats:
    step: int
    epoch: int
    loss: float
    learning_rate: float
    progress: float  # 0..1 of the budget (steps, seconds or epochs, whichever ends first)
    elapsed: float
    target_chars_per_s: float
    target_tokens_per_s: float


@dataclass(frozen=True)
class EvalStats:
    step: int
    epoch: int
    valid_loss: float  # mean NLL in nats per target token, no label smoothing
    bits_per_char: float  # NLL in bits per reply character: comparable across tokenizers
    improved: bool
    reply_chrf: float | None = None  # when the epochs are scored by their replies


@dataclass
class TrainState:
    """Everything needed to resume: counters and optimizer state (the model is saved alongside)."""

    step: int = 0
    epoch: int = 0
    elapsed: float = 0.0
    target_chars: int = 0
    target_tokens: int = 0
    best_valid_loss: float = math.inf
    best_bits_per_char: float = math.inf
    best_score: float = -math.inf  # the selection score of the best epoch (higher is better)
    epochs_without_improvement: int = 0
    optimizer: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrainResult:
    steps: int
    epochs: int
    train_seconds: float
    target_chars_per_s: float
    target_tokens_per_s: float
    valid_loss: float
    valid_bits_per_char: float
    stopped_because: str
    bf16: bool


@dataclass(frozen=True)
class Callbacks:
    on_step: Callable[[StepStats], None] | None = None
    on_eval: Callable[[EvalStats], None] | None = None
    # Called at each epoch end with the model at its best weights so far, e.g. to save them.
    on_epoch_end: Callable[[Seq2Seq, TrainState], None] | None = None
    # Scores the model's replies (higher is better); used when TrainConfig.select_by is "reply_chrf".
    score_replies: Callable[[Seq2Seq], float] | None = None


NO_CALLBACKS = Callbacks()


def learning_rate(config: TrainConfig, step: int, progress: float) -> float:
    """Linear warm-up over warmup_steps, then cosine decay to min_lr_ratio as progress reaches 1."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return config.learning_rate * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


def make_optimizer(model: Seq2Seq, config: TrainConfig) -> torch.optim.AdamW:
    """Weight decay on weight matrices only, not on biases or the (tied) embedding table."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        (decay if param.dim() >= 2 and name != "embedding.weight" else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # fused: one pass over each tensor instead of a dozen, a fifth of the step time otherwise
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=(0.9, 0.98), fused=True)


def train_step(model: Seq2Seq, optimizer: torch.optim.Optimizer, batch: Batch, config: TrainConfig,
               bf16: bool) -> float:
    """One teacher-forced forward, backward, clip and update; returns the batch loss."""
    src, src_lengths = noised_prompts(batch, config)
    with autocast(bf16):
        _, loss = model(src, src_lengths, batch.tgt_in, batch.targets, config.label_smoothing)
    assert loss is not None
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    clipped_step(model, optimizer, config.grad_clip)
    return float(loss.detach())


def clipped_step(model: Seq2Seq, optimizer: torch.optim.Optimizer, max_norm: float) -> None:
    """optimizer.step() with the gradients' total norm clipped to max_norm, as after
    clip_grad_norm_. A fused optimizer divides the gradients by the clipping factor as it reads
    them (the hook mixed precision's GradScaler uses), rather than in a pass of its own over
    every gradient (about 1.5 ms a step at the tutorial's size), and only when they are clipped."""
    if not optimizer.defaults.get("fused"):
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        optimizer.step()
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    total = float(torch.nn.utils.get_total_norm(grads))
    # clip_grad_norm_ multiplies by max_norm / (total + 1e-6) when that is below 1
    clipping = not total + 1e-6 <= max_norm  # also when the norm is not finite, as there
    optimizer.grad_scale = torch.tensor((total + 1e-6) / max_norm) if clipping else None  # type: ignore[attr-defined]
    optimizer.step()


def noised_prompts(batch: Batch, config: TrainConfig) -> tuple[Tensor, Tensor]:
    """The batch's prompts (src, lengths) with the training noise of config: tokens deleted, then
    locally shuffled, then hidden behind <unk>."""
    src, src_lengths = batch.src, batch.src_lengths
    if config.source_token_deletion > 0:
        src, src_lengths = delete_tokens(src, config.source_token_deletion)
    if config.source_token_shuffle > 0:
        src = shuffle_tokens(src, config.source_token_shuffle)
    if config.source_token_dropout > 0:
        dropped = (torch.rand(src.shape) < config.source_token_dropout) & (src != PAD_ID)
        src = src.masked_fill(dropped, UNK_ID)
    return src, src_lengths


def delete_tokens(src: Tensor, share: float) -> tuple[Tensor, Tensor]:
    """src [B, S] padded prompts with each token deleted with probability share (each row keeps
    its first token at least); the rows are closed up and re-padded. Returns (src, lengths [B])."""
    keep = (src != PAD_ID) & (torch.rand(src.shape) >= share)
    keep[:, 0] = True  # every prompt has a first token (lengths are at least 1)
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept tokens first, in order
    lengths = keep.sum(dim=1)
    closed = src.gather(1, order)
    closed = closed.masked_fill(torch.arange(src.size(1)).unsqueeze(0) >= lengths.unsqueeze(1), PAD_ID)
    return closed[:, : int(lengths.max())].contiguous(), lengths


def shuffle_tokens(src: Tensor, distance: int) -> Tensor:
    """src [B, S] padded prompts with their tokens locally shuffled: each moves at most `distance`
    places (Lample et al. 2018: sort positions by i + U(0, distance + 1)); padding stays at the end."""
    keys = torch.arange(src.size(1), dtype=torch.float).unsqueeze(0) + torch.rand(src.shape) * (distance + 1)
    keys = keys.masked_fill(src == PAD_ID, float("inf"))
    return src.gather(1, keys.argsort(dim=1, stable=True))


_Tensors = list[Tensor] | tuple[Tensor, ...]


def _moving_average(decay: float) -> Callable[[_Tensors, _Tensors, Tensor | int], None]:
    """AveragedModel's update for an exponential moving average whose decay warms up as
    (1 + n) / (10 + n) after n updates: a fixed 0.998 would keep the random initial weights in
    the average for thousands of steps, and the early epochs would score as nonsense."""

    @torch.no_grad()
    def update(averaged: _Tensors, current: _Tensors, updates: Tensor | int) -> None:
        n = int(updates)
        pairs = [(a, c) for a, c in zip(averaged, current, strict=True) if a.is_floating_point()]
        if not pairs:  # integer buffers, such as the token spellings, stay as they are
            return
        torch._foreach_lerp_([a for a, _ in pairs], [c for _, c in pairs], 1 - min(decay, (1 + n) / (10 + n)))

    return update


@torch.no_grad()
def evaluate(model: Seq2Seq, batches: Sequence[Batch], bf16: bool = False) -> tuple[float, float]:
    """(mean NLL per target token in nats, bits per reply character) over the batches."""
    was_training = model.training
    model.eval()
    nll, tokens, chars = 0.0, 0, 0
    for batch in batches:
        with autocast(bf16):
            logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in, batch.targets)
        gold = batch.targets[batch.targets != PAD_ID]
        nll += float(F.cross_entropy(logits.float(), gold, reduction="sum"))
        tokens += batch.target_tokens
        chars += batch.reply_chars
    model.train(was_training)
    return nll / max(tokens, 1), nll / math.log(2) / max(chars, 1)


def train(
    model: Seq2Seq,
    train_examples: Sequence[Example],
    valid_examples: Sequence[Example],
    config: TrainConfig,
    callbacks: Callbacks = NO_CALLBACKS,
    state: TrainState | None = None,
) -> TrainResult:
    """Train in place; the model ends with the weights that scored best on validation."""
    if not train_examples:
        raise ValueError("no training pairs")
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    keep_freed_memory()
    bf16 = use_bf16(config.bf16)
    state = state or TrainState()
    optimizer = make_optimizer(model, config)
    if state.optimizer:
        optimizer.load_state_dict(state.optimizer)
    valid_batches = make_batches(valid_examples, config.batch_size * 2, shuffle=False)
    # The weights that epochs evaluate and keep: the trained ones, or their moving average (which
    # restarts from the trained weights when a run is resumed).
    averaged = (AveragedModel(model, multi_avg_fn=_moving_average(config.ema_decay), use_buffers=True)
                if config.ema_decay > 0 else None)
    scored: Seq2Seq = averaged.module if averaged is not None else model  # type: ignore[assignment]
    steps_per_epoch = math.ceil(len(train_examples) / config.batch_size)
    best_weights = copy.deepcopy(model.state_dict())
    stopped = "max_epochs"
    start = time.perf_counter() - state.elapsed

    def progress() -> float:
        fractions = [state.step / (config.max_epochs * steps_per_epoch)]
        if config.max_steps:
            fractions.append(state.step / config.max_steps)
        if config.max_seconds:
            fractions.append((time.perf_counter() - start) / config.max_seconds)
        return max(fractions)

    model.train()
    while state.epoch < config.max_epochs and stopped == "max_epochs":
        batches = make_batches(train_examples, config.batch_size, shuffle=True, seed=config.seed + state.epoch)
        steps_before = state.step
        for batch in batches:
            if progress() >= 1.0:
                stopped = "budget"
                break
            lr = learning_rate(config, state.step, progress())
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = train_step(model, optimizer, batch, config, bf16)
            if averaged is not None:
                averaged.update_parameters(model)
            state.step += 1
            state.target_chars += batch.reply_chars
            state.target_tokens += batch.target_tokens
            if callbacks.on_step:
                elapsed = time.perf_counter() - start
                callbacks.on_step(
                    StepStats(state.step, state.epoch, loss, lr, progress(), elapsed,
                              state.target_chars / elapsed, state.target_tokens / elapsed)
                )
        if state.step == steps_before:  # the budget ran out as the last epoch ended: none began
            break
        state.epoch += 1
        state.elapsed = time.perf_counter() - start
        if valid_batches:
            valid_loss, bpc = evaluate(scored, valid_batches, bf16)
            reply_chrf = None
            if config.select_by == "reply_chrf" and callbacks.score_replies is not None:
                scored.eval()
                reply_chrf = callbacks.score_replies(scored)
                scored.train()
            score = -valid_loss if reply_chrf is None else reply_chrf
            improved = score > state.best_score
            if improved:
                state.best_valid_loss, state.best_bits_per_char, state.best_score = valid_loss, bpc, score
                state.epochs_without_improvement = 0
                best_weights = copy.deepcopy(scored.state_dict())
            else:
                state.epochs_without_improvement += 1
            if callbacks.on_eval:
                callbacks.on_eval(EvalStats(state.step, state.epoch, valid_loss, bpc, improved, reply_chrf))
            if state.epochs_without_improvement >= config.patience:
                stopped = "early_stopping"
        else:
            best_weights = copy.deepcopy(scored.state_dict())
        if callbacks.on_epoch_end:
            current = copy.deepcopy(model.state_dict())
            model.load_state_dict(best_weights)
            state.optimizer = optimizer.state_dict()
            callbacks.on_epoch_end(model, state)
            model.load_state_dict(current)
    model.load_state_dict(best_weights)
    model.eval()
    seconds = time.perf_counter() - start
    return TrainResult(
        steps=state.step,
        epochs=state.epoch,
        train_seconds=seconds,
        target_chars_per_s=state.target_chars / seconds,
        target_tokens_per_s=state.target_tokens / seconds,
        valid_loss=state.best_valid_loss,
        valid_bits_per_char=state.best_bits_per_char,
        stopped_because=stopped,
        bf16=bf16,
    )
