"""The bot's commands, the same on every platform: what each does and who may run it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bot.database import Database
from bot.messages import IncomingMessage
from bot.recent_turns import RecentTurns
from core_model.checkpoint import CheckpointError
from storage.models import RunTrigger
from storage.people import (
    chat_stats,
    forget_person,
    get_chattiness,
    person_texts,
    set_chattiness,
    set_opted_out,
)

if TYPE_CHECKING:
    from bot.learning import LearningService, RetrainOutcome


@dataclass(frozen=True)
class CommandContext:
    message: IncomingMessage
    args: str
    chat_row_id: int
    database: Database
    model_metrics: dict[str, object]
    learning: LearningService | None = None
    # Posts to the chat the command came from, later (the result of a retraining).
    notify: Callable[[str, Path | None], Awaitable[None]] | None = None
    # The conversations' last turns, which /forget erases too.
    turns: RecentTurns | None = None


@dataclass(frozen=True)
class Command:
    name: str
    description: str
    run: Callable[[CommandContext], Awaitable[str]]
    admin_only: bool = False


HELP_HEADER = "I am a Seq2Seq chatbot: mention me or reply to me and I answer; I learn from this chat."
NOT_ADMIN = "Sorry, only admins of this chat can use {name}."
RETRAIN_UNAVAILABLE = "Retraining is not available yet."


async def _help(ctx: CommandContext) -> str:
    lines = [HELP_HEADER, *(f"/{command.name}  {command.description}" for command in COMMANDS.values())]
    return "\n".join(lines)


async def _model(ctx: CommandContext) -> str:
    metrics = ctx.model_metrics
    bits = metrics.get("valid_bits_per_char")
    trained = str(metrics.get("trained_at", "an unknown date"))
    quality = f", validation {bits:.3f} bits/char" if isinstance(bits, float) else ""
    context = " It reads the message before the one it answers too." if metrics.get("context_pairs") else ""
    return f"Seq2Seq model trained {trained} on {metrics.get('train_pairs', '?')} pairs{quality}.{context}"


async def _forget(ctx: CommandContext) -> str:
    if ctx.args.strip().lower() not in ("yes", "confirm"):
        return (f"This erases every message you wrote on {ctx.message.platform} that I keep, in every "
                "chat, and I stop learning from you. Send /forget yes to confirm.")

    def erase() -> tuple[int, list[str]]:
        with ctx.database.sessions.begin() as session:
            texts = person_texts(session, platform=ctx.message.platform, external_id=ctx.message.user_id)
            return forget_person(session, platform=ctx.message.platform, external_id=ctx.message.user_id,
                                 now=datetime.now(UTC)), texts

    erased, texts = await asyncio.to_thread(erase)
    if ctx.turns is not None:
        ctx.turns.forget_author(ctx.message.platform, ctx.message.user_id)
    if ctx.learning is not None and texts:  # the models' memories learned from the chats
        await ctx.learning.forget_texts(texts)
    return f"Done: {erased} of your messages erased. I no longer keep what you write; /optin undoes that."


def _opt(opted_out: bool, answer: str) -> Callable[[CommandContext], Awaitable[str]]:
    async def run(ctx: CommandContext) -> str:
        def store() -> None:
            with ctx.database.sessions.begin() as session:
                set_opted_out(session, platform=ctx.message.platform, external_id=ctx.message.user_id,
                              opted_out=opted_out)

        await asyncio.to_thread(store)
        return answer

    return run


def _count(number: int, one: str, many: str | None = None) -> str:
    """'1 person', '2 people', '0 messages'."""
    return f"{number} {one if number == 1 else many or one + 's'}"


async def _stats(ctx: CommandContext) -> str:
    def count() -> str:
        with ctx.database.reads.begin() as session:
            stats = chat_stats(session, chat_id=ctx.chat_row_id)
        return (f"This chat: {_count(stats.messages, 'message')} from {_count(stats.people, 'person', 'people')}, "
                f"{stats.replies} of them my replies. Everywhere: {_count(stats.all_messages, 'message')} in "
                f"{_count(stats.all_chats, 'chat')}.")

    return await asyncio.to_thread(count)


async def _chatty(ctx: CommandContext) -> str:
    argument = ctx.args.strip().rstrip("%")
    if not argument:
        def read() -> int:
            with ctx.database.reads.begin() as session:
                return get_chattiness(session, platform=ctx.message.platform, external_id=ctx.message.chat_id)

        return f"I answer {await asyncio.to_thread(read)}% of the messages not addressed to me. /chatty 0–100 changes it."
    if not argument.isdigit() or not 0 <= int(argument) <= 100:
        return "Give a number from 0 to 100: the percent of unaddressed messages I answer."

    def store() -> None:
        with ctx.database.sessions.begin() as session:
            set_chattiness(session, chat_id=ctx.chat_row_id, percent=int(argument))

    await asyncio.to_thread(store)
    return f"I will answer {int(argument)}% of the messages not addressed to me."


async def _retrain(ctx: CommandContext) -> str:
    if ctx.learning is None:
        return RETRAIN_UNAVAILABLE
    argument = ctx.args.strip().lower()
    if argument == "status":
        return await ctx.learning.status()
    asker = f"{ctx.message.platform}:{ctx.message.user_id}"
    notify = ctx.notify

    async def report(outcome: RetrainOutcome) -> None:
        if notify is not None:
            await notify(outcome.message, outcome.plot)

    if not ctx.learning.start(RunTrigger.ADMIN, asker, force=argument in ("force", "full"),
                              full=argument == "full", on_done=report):
        return "Retraining is already running. /retrain status shows its progress."
    return ("Retraining started on this bot's conversations. The new model goes live only if it is no "
            "worse than the current one; I will post the result here (/retrain status meanwhile).")


async def _rollback(ctx: CommandContext) -> str:
    if ctx.learning is None:
        return RETRAIN_UNAVAILABLE
    try:
        return await ctx.learning.rollback(ctx.args.strip() or None)
    except CheckpointError as error:
        return f"Cannot roll back: {error}"


COMMANDS: dict[str, Command] = {command.name: command for command in [
    Command("help", "what I do and my commands", _help),
    Command("start", "the same as /help", _help),
    Command("model", "which model answers you, and how it was trained", _model),
    Command("forget", "erase everything you wrote that I keep", _forget),
    Command("optout", "stop keeping and learning from what you write", _opt(True, (
        "I will no longer keep or learn from what you write. /optin undoes it; /forget erases the past."))),
    Command("optin", "let me keep and learn from what you write again", _opt(False, (
        "Thanks: I will keep and learn from what you write again."))),
    Command("stats", "message counts (admins)", _stats, admin_only=True),
    Command("chatty", "how often I join in unasked, 0–100 (admins)", _chatty, admin_only=True),
    Command("retrain", "retrain me on the conversations; 'status', 'force' or 'full' (admins)", _retrain,
            admin_only=True),
    Command("rollback", "go back to the previous model, or to a named version (admins)", _rollback,
            admin_only=True),
]}


def parse_command(text: str) -> tuple[str, str] | None:
    """("name", "args") for "/name@bot args", or None when the text is not a command."""
    if not text.startswith("/") or len(text) < 2:
        return None
    head, _, args = text[1:].partition(" ")
    return head.split("@", 1)[0].lower(), args.strip()
