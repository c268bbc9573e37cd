"""A training progress bar on stderr: loss, reply characters per second, epoch and time left."""

from __future__ import annotations

import sys

from tqdm import tqdm

from core_model.training import Callbacks, EvalStats, StepStats


def progress_callbacks() -> Callbacks:
    """A progress bar on stderr showing loss, reply characters/s and time left."""
    bar = tqdm(total=100, unit="%", file=sys.stderr, dynamic_ncols=True,
               bar_format="{l_bar}{bar}| {postfix}", desc="training")

    def on_step(stats: StepStats) -> None:
        bar.n = min(int(stats.progress * 100), 100)
        left = stats.elapsed / max(stats.progress, 1e-9) - stats.elapsed
        bar.set_postfix_str(f"loss {stats.loss:.3f} · {stats.target_chars_per_s:,.0f} chars/s · "
                            f"epoch {stats.epoch + 1} · ETA {left:,.0f}s", refresh=False)
        bar.refresh()

    def on_eval(stats: EvalStats) -> None:
        mark = "best" if stats.improved else ""
        replies = "" if stats.reply_chrf is None else f", replies chrF {stats.reply_chrf:.2f}"
        bar.write(f"epoch {stats.epoch}: valid loss {stats.valid_loss:.3f}, "
                  f"{stats.bits_per_char:.3f} bits/char{replies} {mark}", file=sys.stderr)

    return Callbacks(on_step=on_step, on_eval=on_eval)
