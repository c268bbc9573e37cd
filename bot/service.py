"""ChatService: the one transport-agnostic entry point every adapter hands its messages to.

It logs every message it sees, decides whether to answer, asks the engine for the reply and logs
the reply linked to the message it answers. Adapters translate and send, nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from bot.commands import COMMANDS, NOT_ADMIN, CommandContext, parse_command
from bot.database import Database
from bot.learning import LearningService
from bot.messages import Conversation, IncomingMessage, Reply, storable
from bot.metrics import BotMetrics
from bot.permissions import Permissions
from bot.recent_turns import RecentTurns
from core_model.tokenizer import normalize
from storage.messages import (
    LoggedMessage,
    log_incoming,
    log_reply,
    record_deletion,
    record_edit,
    record_sent,
)
from storage.models import ChatKind
from storage.people import get_chattiness

log = logging.getLogger(__name__)

MAX_INPUT_CHARS = 4000  # longer messages are cut; the model reads only the last tokens anyway
EMPTY_INPUT = "I only read text: write me a few words."
# The model has no reply: it ended at once, or the message shares no character with the prompts
# it learned from (core_model/replies.py).
NO_REPLY = "…"
UNKNOWN_COMMAND = "Unknown command /{name}. Try /help."


class ReplyEngine(Protocol):
    async def reply(self, prompt: str, context: str = "") -> str: ...

    @property
    def metrics(self) -> dict[str, object]: ...


# Sends a message the bot was not asked for right then (e.g. a retraining's result) to a chat, or
# with private=True to a person's private chat with the bot (the id is then a user id).
Notifier = Callable[[str, str, Path | None, bool], Awaitable[None]]  # (chat id, text, image, private)


class ChatService:
    def __init__(self, engine: ReplyEngine, database: Database, permissions: Permissions, *,
                 cooldown_seconds: float = 30.0, rng: random.Random | None = None,
                 metrics: BotMetrics | None = None, context_window_seconds: float = 300.0) -> None:
        self.engine = engine
        self.metrics = metrics or BotMetrics()
        self.database = database
        self.permissions = permissions
        self.cooldown_seconds = cooldown_seconds
        # The version row of the live model, set by whoever swaps models; logged with each reply.
        self.model_version_id: int | None = None
        # The learning loop, when the bot runs one (the /retrain and /rollback commands use it).
        self.learning: LearningService | None = None
        self._rng = rng or random.Random()
        self._notifiers: dict[str, Notifier] = {}
        self._last_unasked: dict[tuple[str, str], float] = {}
        # The turn before each message answered is its context, as mining pairs them.
        self.turns = RecentTurns(context_window_seconds)

    async def handle(self, message: IncomingMessage) -> Reply | None:
        """Log the message; the reply to send (already logged), or None when the bot stays silent."""
        started = time.perf_counter()
        counted = self.metrics.platform(message.platform)
        counted.seen.inc()
        text = normalize(message.text[:MAX_INPUT_CHARS])
        command = parse_command(text)
        conversation: Conversation = (message.platform, message.chat_id, message.thread_id)
        spoken = command is None and bool(text)  # a turn of the conversation, which the model may answer
        context = self.turns.context(conversation) if spoken else ""
        # A message addressed to the bot will be answered (unless logging finds it a redelivery), so
        # its decode runs while it is logged: the reply waits for the slower of the two, not both.
        early = asyncio.ensure_future(self.engine.reply(text, context)) if spoken and _addressed(message) else None
        try:
            logged = await self.database.write(
                log_incoming, platform=message.platform, chat_id=message.chat_id,
                chat_kind=ChatKind(message.chat_kind), chat_title=storable(message.chat_title),
                author_id=message.user_id, author_name=storable(message.user_name),
                message_id=message.message_id, text=text,
                created_at=message.sent_at, reply_to_message_id=message.reply_to_id, thread_id=message.thread_id)
        except BaseException:
            _abandon(early)
            raise
        if logged.duplicate:  # the platform delivered it again: it was handled the first time
            _abandon(early)
            log.info("ignoring redelivered message %s in %s:%s", message.message_id, message.platform,
                     message.chat_id)
            return None
        if spoken and logged.text_kept:  # an opted-out person's words are not kept, here either
            self.turns.add(conversation, text, message.user_id, message.message_id)
        if command is not None:
            answer = await self._command(message, logged, *command)
        elif not text:  # nothing the model could read: say so, if the message was for the bot
            if not _addressed(message):
                return None
            answer = EMPTY_INPUT
        elif early is not None:
            answer = await early or NO_REPLY
        elif await self._should_answer(message):
            answer = await self.engine.reply(text, context) or NO_REPLY
        else:
            return None
        row_id = await self.database.write(log_reply, answers=logged, text=answer, created_at=datetime.now(UTC),
                                           model_version_id=self.model_version_id, thread_id=message.thread_id)
        turn = spoken and answer != NO_REPLY  # the bot's reply is the conversation's last turn
        if turn:
            self.turns.add(conversation, answer, reply_row=row_id)
        counted.answered.inc()
        counted.reply_seconds.observe(time.perf_counter() - started)
        return Reply(answer, row_id, conversation if turn else None)

    async def sent(self, reply: Reply, message_id: str) -> None:
        """The platform accepted a reply and gave it this id (so that replies to it are linked)."""
        if reply.row_id is not None:
            await self.database.write(record_sent, row_id=reply.row_id, message_id=message_id)
            if reply.conversation is not None:
                self.turns.sent(reply.conversation, reply.row_id, message_id)

    def set_notifier(self, platform: str, notifier: Notifier) -> None:
        """Adapters register how to post to one of their chats unprompted."""
        self._notifiers[platform] = notifier

    async def notify(self, platform: str, chat_id: str, text: str, image: Path | None = None, *,
                     private: bool = False) -> None:
        notifier = self._notifiers.get(platform)
        if notifier is None:
            log.info("no %s adapter running to tell %s: %s", platform, chat_id, text)
            return
        await notifier(chat_id, text, image, private)

    def send_failed(self, platform: str) -> None:
        """The platform refused a reply for good (after the client's own retries)."""
        self.metrics.send_failures.labels(platform).inc()

    async def edited(self, platform: str, chat_id: str, message_id: str, text: str, at: datetime) -> None:
        text = normalize(text[:MAX_INPUT_CHARS])
        await self.database.write(record_edit, platform=platform, chat_id=chat_id,
                                message_id=message_id, text=text, edited_at=at)
        self.turns.edited(platform, chat_id, message_id, text)

    async def deleted(self, platform: str, chat_id: str, message_id: str, at: datetime) -> None:
        self.turns.deleted(platform, chat_id, message_id)
        await self.database.write(record_deletion, platform=platform, chat_id=chat_id,
                                message_id=message_id, deleted_at=at)

    async def _should_answer(self, message: IncomingMessage) -> bool:
        """Always when addressed; otherwise by the chat's chattiness, at most once per cooldown."""
        if _addressed(message):
            return True
        key = (message.platform, message.chat_id)
        now = time.monotonic()
        if now - self._last_unasked.get(key, -float("inf")) < self.cooldown_seconds:
            return False
        percent = await asyncio.to_thread(self._chattiness, message)
        if percent <= 0 or self._rng.random() * 100 >= percent:
            return False
        self._last_unasked[key] = now
        return True

    async def _command(self, message: IncomingMessage, logged: LoggedMessage, name: str, args: str) -> str:
        command = COMMANDS.get(name)
        if command is None:
            return UNKNOWN_COMMAND.format(name=name)
        if command.admin_only and not await self.permissions.is_admin(message):
            log.info("refused /%s to %s:%s in chat %s", name, message.platform, message.user_id,
                     message.chat_id)
            return NOT_ADMIN.format(name=f"/{name}")
        async def notify_here(text: str, image: Path | None = None) -> None:
            await self.notify(message.platform, message.chat_id, text, image)

        context = CommandContext(message, args, logged.chat_id, self.database, self.engine.metrics,
                                 self.learning, notify_here, self.turns)
        return await command.run(context)

    def _chattiness(self, message: IncomingMessage) -> int:
        with self.database.reads.begin() as session:
            return get_chattiness(session, platform=message.platform, external_id=message.chat_id)


def _abandon(decode: asyncio.Future[str] | None) -> None:
    """Stop a decode whose reply will not be sent; if it already failed, its error is dropped
    quietly (the caller has its own to raise)."""
    if decode is not None:
        decode.cancel()
        decode.add_done_callback(lambda done: done.cancelled() or done.exception())


def _addressed(message: IncomingMessage) -> bool:
    return message.chat_kind == "private" or message.mentions_bot or message.replies_to_bot
