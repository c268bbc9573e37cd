"""Telegram (python-telegram-bot 22): updates to IncomingMessage, replies back. Translation only."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from telegram import BotCommand, Message, MessageEntity, ReplyParameters, Update
from telegram.constants import ChatAction, ChatMemberStatus, ChatType, MessageLimit
from telegram.error import TelegramError
from telegram.ext import AIORateLimiter, Application, ContextTypes, MessageHandler, filters

from bot.adapters.telegram_http import AiohttpRequest
from bot.commands import COMMANDS
from bot.messages import ChatKind, IncomingMessage, split_text
from bot.service import ChatService

log = logging.getLogger(__name__)

PLATFORM = "telegram"
ADMIN_STATUSES = {ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER}
ADMIN_CACHE_SECONDS = 60.0
TYPING_DELAY_S = 0.5
_KINDS: dict[str, ChatKind] = {ChatType.PRIVATE: "private", ChatType.GROUP: "group",
                               ChatType.SUPERGROUP: "group", ChatType.CHANNEL: "channel"}


@dataclass(frozen=True)
class TelegramOptions:
    token: str
    # Another Bot API server (a local one, or a test fake); None for Telegram's own.
    api_url: str | None = None
    # Sending pace (Telegram's published limits) and retries of a rate-limited send.
    overall_per_second: float = 30
    group_per_minute: float = 20
    max_retries: int = 3
    poll_timeout: int = 30
    concurrent_updates: int = 256
    connection_pool_size: int = 8


class TelegramAdapter:
    def __init__(self, service: ChatService, options: TelegramOptions) -> None:
        self.service = service
        self.options = options
        builder = (Application.builder().token(options.token)
                   # Updates from many chats are handled at once, so the engine can batch them.
                   .concurrent_updates(options.concurrent_updates)
                   .request(AiohttpRequest(options.connection_pool_size))
                   # The long poll gets its own connection, so sends never wait behind it.
                   .get_updates_request(AiohttpRequest(1))
                   .rate_limiter(AIORateLimiter(overall_max_rate=options.overall_per_second,
                                                group_max_rate=options.group_per_minute,
                                                max_retries=options.max_retries)))
        if options.api_url:
            base = options.api_url.rstrip("/")
            builder = builder.base_url(f"{base}/bot").base_file_url(f"{base}/file/bot")
        self.app = builder.build()
        self.app.add_handler(MessageHandler(filters.UpdateType.EDITED_MESSAGE & filters.TEXT, self._on_edit))
        self.app.add_handler(MessageHandler(filters.UpdateType.MESSAGE & filters.TEXT, self._on_message))
        self.app.add_error_handler(self._on_error)
        self._admin_cache: dict[tuple[int, int], tuple[float, bool]] = {}
        self._typing_tasks: set[asyncio.Future[None]] = set()  # held until done (the loop keeps weak references)
        service.permissions.set_chat_admin_check(PLATFORM, self._is_chat_admin)
        service.set_notifier(PLATFORM, self._notify)

    async def start(self) -> None:
        """Connect, register the command menu and start polling (the caller owns the event loop)."""
        await self.app.initialize()
        await self.register_commands()
        await self.app.start()
        assert self.app.updater is not None
        await self.app.updater.start_polling(poll_interval=0, timeout=self.options.poll_timeout,
                                             allowed_updates=["message", "edited_message"])
        log.info("telegram: polling as @%s", self.app.bot.username)

    async def stop(self) -> None:
        """Stop taking updates, let running handlers finish, close the connection."""
        if self.app.updater is not None and self.app.updater.running:
            await self.app.updater.stop()
        if self.app.running:
            await self.app.stop()
        await self.app.shutdown()

    async def register_commands(self) -> None:
        await self.app.bot.set_my_commands(
            [BotCommand(command.name, command.description) for command in COMMANDS.values()])

    async def _on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Hand a text message to the service and send its reply, quoting the message."""
        message = update.effective_message
        if message is None or message.text is None or self._for_another_bot(message.text):
            return
        incoming = self._translate(message)
        addressed = incoming.chat_kind == "private" or incoming.mentions_bot or incoming.replies_to_bot
        # "typing…" only if the reply is slow to come: a quick reply needs no indicator, and under
        # load an extra request (or even a task) per message would slow every reply.
        typing = asyncio.get_running_loop().call_later(TYPING_DELAY_S, self._start_typing, message) \
            if addressed else None
        try:
            reply = await self.service.handle(incoming)
        finally:
            if typing is not None:
                typing.cancel()
        if reply is None:
            return
        thread = message.message_thread_id if message.is_topic_message else None
        quote = ReplyParameters(message.message_id, allow_sending_without_reply=True)
        try:
            for index, piece in enumerate(split_text(reply.text, MessageLimit.MAX_TEXT_LENGTH)):
                sent = await context.bot.send_message(message.chat_id, piece, message_thread_id=thread,
                                                      reply_parameters=quote if index == 0 else None)
                if index == 0:  # replies to the first piece link to the logged reply
                    await self.service.sent(reply, str(sent.message_id))
        except TelegramError:
            # Retries (rate limits) are the rate limiter's; what still fails is logged and counted.
            log.exception("telegram: sending a reply in chat %s failed", message.chat_id)
            self.service.send_failed(PLATFORM)

    async def _notify(self, chat_id: str, text: str, image: Path | None, private: bool) -> None:
        """Post to a chat unprompted: the text, then the image (e.g. a retraining's curves). A private
        chat's id is the person's user id, so `private` needs nothing more here."""
        try:
            for piece in split_text(text, MessageLimit.MAX_TEXT_LENGTH):
                await self.app.bot.send_message(int(chat_id), piece)
            if image is not None:
                with image.open("rb") as picture:
                    await self.app.bot.send_photo(int(chat_id), picture)
        except TelegramError:
            log.exception("telegram: notifying chat %s failed", chat_id)
            self.service.send_failed(PLATFORM)

    async def _on_edit(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """An edited message replaces the logged text."""
        message = update.edited_message
        if message is None or message.text is None:
            return
        edited_at = message.edit_date or datetime.now(UTC)
        await self.service.edited(PLATFORM, str(message.chat_id), str(message.message_id),
                                  self._strip_mention(message), edited_at)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log with the traceback; a failed send never takes the bot down."""
        log.error("telegram: error while handling an update", exc_info=context.error)

    def _translate(self, message: Message) -> IncomingMessage:
        bot_id = self.app.bot.id
        author = message.from_user
        anonymous_admin = message.sender_chat is not None and message.sender_chat.id == message.chat_id
        replied = message.reply_to_message
        return IncomingMessage(
            platform=PLATFORM,
            chat_id=str(message.chat_id),
            chat_kind=_KINDS.get(message.chat.type, "group"),
            user_id=str(message.sender_chat.id if anonymous_admin and message.sender_chat else
                        author.id if author else message.chat_id),
            user_name=(author.full_name if author and not anonymous_admin else message.chat.title or ""),
            text=self._strip_mention(message),
            message_id=str(message.message_id),
            reply_to_id=str(replied.message_id) if replied else None,
            thread_id=str(message.message_thread_id) if message.is_topic_message else None,
            mentions_bot=self._mentions_bot(message),
            replies_to_bot=bool(replied and replied.from_user and replied.from_user.id == bot_id),
            chat_title=message.chat.title,
            sender_is_chat=anonymous_admin,
            sent_at=message.date,
        )

    def _mentions_bot(self, message: Message) -> bool:
        username = f"@{self.app.bot.username}".lower()
        for entity, text in message.parse_entities([MessageEntity.MENTION, MessageEntity.TEXT_MENTION]).items():
            if text.lower() == username or (entity.user is not None and entity.user.id == self.app.bot.id):
                return True
        return False

    def _strip_mention(self, message: Message) -> str:
        text = message.text or ""
        username = f"@{self.app.bot.username}"
        if text.startswith("/"):
            return text  # commands keep "@botname": the service reads "/cmd@bot" as "/cmd"
        return " ".join(text.replace(username, " ").split()) if username in text else text

    def _for_another_bot(self, text: str) -> bool:
        """`/cmd@otherbot` is another bot's command in a shared group: not ours to answer."""
        if not text.startswith("/"):
            return False
        head = text.split(maxsplit=1)[0]
        return "@" in head and head.split("@", 1)[1].lower() != (self.app.bot.username or "").lower()

    def _start_typing(self, message: Message) -> None:
        self._typing_tasks.add(task := asyncio.ensure_future(self._typing(message)))
        task.add_done_callback(self._typing_tasks.discard)

    async def _typing(self, message: Message) -> None:
        """Show "typing…" in the chat (the reply is being slow to come)."""
        try:
            await message.chat.send_action(ChatAction.TYPING, message_thread_id=message.message_thread_id
                                           if message.is_topic_message else None)
        except TelegramError as error:  # cosmetic: never let it stop the reply
            log.warning("telegram: typing action failed: %s", error)

    async def _is_chat_admin(self, message: IncomingMessage) -> bool:
        key = (int(message.chat_id), int(message.user_id))
        cached = self._admin_cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < ADMIN_CACHE_SECONDS:
            return cached[1]
        member = await self.app.bot.get_chat_member(key[0], key[1])
        is_admin = member.status in ADMIN_STATUSES
        self._admin_cache[key] = (time.monotonic(), is_admin)
        return is_admin
