"""Discord (discord.py 2.x): messages and slash commands to IncomingMessage, replies back."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.commands import COMMANDS, Command
from bot.messages import IncomingMessage, Reply, split_text
from bot.service import ChatService

log = logging.getLogger(__name__)

PLATFORM = "discord"
MESSAGE_LIMIT = 2000
TYPING_DELAY_S = 0.5


@dataclass(frozen=True)
class DiscordOptions:
    token: str
    # Slash commands are synced to this guild at once (global commands take up to an hour).
    guild_id: int | None = None
    ready_timeout: float = 60.0


class DiscordBot(commands.Bot):
    """A commands.Bot that hands messages to the ChatService; it translates and sends, nothing else."""

    def __init__(self, *, service: ChatService, options: DiscordOptions, **client_options: Any) -> None:
        intents = discord.Intents.default()
        intents.message_content = True  # privileged: enable it in the developer portal (README)
        super().__init__(command_prefix=commands.when_mentioned, intents=intents, help_command=None,
                         **client_options)
        self.service = service
        self.options = options
        for command in COMMANDS.values():
            self.tree.add_command(self._slash_command(command))
        service.permissions.set_chat_admin_check(PLATFORM, self._is_chat_admin)
        service.set_notifier(PLATFORM, self._notify)

    async def setup_hook(self) -> None:
        if self.options.guild_id is not None:
            guild = discord.Object(id=self.options.guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()

    async def on_message(self, message: discord.Message) -> None:
        """Hand a person's message to the service and send the reply, referencing the message."""
        if message.author.bot or self.user is None:
            return
        incoming = self._translate(message)
        addressed = incoming.chat_kind == "private" or incoming.mentions_bot or incoming.replies_to_bot
        typing = asyncio.create_task(self._typing(message)) if addressed else None
        try:
            try:
                reply = await self.service.handle(incoming)
            finally:
                if typing is not None:
                    typing.cancel()
            if reply is not None:
                await self._send(message, reply)
        except discord.HTTPException:
            # discord.py already retried rate limits and server errors; this one is final.
            log.exception("discord: sending a reply in channel %s failed", message.channel.id)
            self.service.send_failed(PLATFORM)

    async def _typing(self, message: discord.Message) -> None:
        """Show "typing…" only if the reply is slow to come (a quick one needs no indicator)."""
        await asyncio.sleep(TYPING_DELAY_S)
        try:
            async with message.channel.typing():
                await asyncio.Event().wait()  # until cancelled when the reply is ready
        except discord.HTTPException as error:
            log.warning("discord: typing indicator failed: %s", error)

    async def _notify(self, chat_id: str, text: str, image: Path | None, private: bool) -> None:
        """Post to a channel (or, if private, a user's DMs) unprompted: the text, with the image
        attached (a retraining's curves)."""
        try:
            channel: Any
            if private:
                channel = self.get_user(int(chat_id)) or await self.fetch_user(int(chat_id))
            else:
                channel = self.get_channel(int(chat_id)) or await self.fetch_channel(int(chat_id))
            if not isinstance(channel, discord.abc.Messageable):
                return
            *first, last = split_text(text, MESSAGE_LIMIT)
            for piece in first:
                await channel.send(piece)
            if image is not None:
                await channel.send(last, file=discord.File(image))
            else:
                await channel.send(last)
        except discord.HTTPException:
            log.exception("discord: notifying channel %s failed", chat_id)
            self.service.send_failed(PLATFORM)

    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        """An edited message replaces the logged text."""
        content = payload.data.get("content")
        if content is not None:
            await self.service.edited(PLATFORM, str(payload.channel_id), str(payload.message_id),
                                      self._strip_mention(content), datetime.now(UTC))

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        """A deleted message loses its text in the log."""
        await self.service.deleted(PLATFORM, str(payload.channel_id), str(payload.message_id), datetime.now(UTC))

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        log.exception("discord: error in %s", event_method)

    def _translate(self, message: discord.Message) -> IncomingMessage:
        assert self.user is not None
        referenced = message.reference.resolved if message.reference else None
        private = isinstance(message.channel, discord.DMChannel)
        return IncomingMessage(
            platform=PLATFORM,
            chat_id=str(message.channel.id),
            chat_kind="private" if private else "group",
            user_id=str(message.author.id),
            user_name=message.author.display_name,
            text=self._strip_mention(message.content),
            message_id=str(message.id),
            reply_to_id=str(message.reference.message_id) if message.reference and message.reference.message_id else None,
            mentions_bot=self.user in message.mentions,
            replies_to_bot=isinstance(referenced, discord.Message) and referenced.author.id == self.user.id,
            chat_title=None if private else getattr(message.channel, "name", None),
            sent_at=message.created_at,
        )

    def _strip_mention(self, text: str) -> str:
        if self.user is None:
            return text
        stripped = text
        for form in (f"<@{self.user.id}>", f"<@!{self.user.id}>"):
            stripped = stripped.replace(form, " ")
        return " ".join(stripped.split()) if stripped != text else text

    async def _send(self, message: discord.Message, reply: Reply) -> None:
        first, *rest = split_text(reply.text, MESSAGE_LIMIT)
        sent = await message.channel.send(first, reference=message, mention_author=False)
        await self.service.sent(reply, str(sent.id))
        for piece in rest:
            await message.channel.send(piece)

    def _slash_command(self, command: Command) -> app_commands.Command[Any, ..., None]:
        async def callback(interaction: discord.Interaction, args: str = "") -> None:
            await self._on_slash(interaction, command.name, args)

        slash: app_commands.Command[Any, ..., None] = app_commands.Command(name=command.name, description=command.description[:100], callback=callback)
        if command.admin_only:  # shown to managers only; the service still checks at run time
            slash.default_permissions = discord.Permissions(manage_guild=True)
        return slash

    async def _on_slash(self, interaction: discord.Interaction, name: str, args: str) -> None:
        """A slash command goes through the same service as a typed one."""
        incoming = IncomingMessage(
            platform=PLATFORM, chat_id=str(interaction.channel_id),
            chat_kind="private" if interaction.guild is None else "group",
            user_id=str(interaction.user.id), user_name=interaction.user.display_name,
            text=f"/{name} {args}".strip(), message_id=f"interaction-{interaction.id}",
            sent_at=interaction.created_at)
        reply = await self.service.handle(incoming)
        pieces = split_text(reply.text if reply else "…", MESSAGE_LIMIT)
        await interaction.response.send_message(pieces[0])
        for piece in pieces[1:]:
            await interaction.followup.send(piece)

    async def _is_chat_admin(self, message: IncomingMessage) -> bool:
        """Members with Manage Server, and the owner."""
        channel = self.get_channel(int(message.chat_id))
        guild = getattr(channel, "guild", None)
        if guild is None:
            return False
        user_id = int(message.user_id)
        if guild.owner_id == user_id:
            return True
        member = guild.get_member(user_id) or await guild.fetch_member(user_id)
        return member.guild_permissions.manage_guild


class DiscordAdapter:
    """Runs a DiscordBot inside the caller's event loop, next to the other adapters."""

    def __init__(self, service: ChatService, options: DiscordOptions, **client_options: Any) -> None:
        self.bot = DiscordBot(service=service, options=options, **client_options)
        self.options = options
        self._connection: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Log in, connect the gateway in the background and wait until the guilds are ready."""
        await self.bot.login(self.options.token)
        self._connection = asyncio.create_task(self.bot.connect(reconnect=True))
        ready = asyncio.create_task(self.bot.wait_until_ready())
        done, _ = await asyncio.wait({ready, self._connection}, timeout=self.options.ready_timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            if self._connection in done:
                self._connection.result()  # raises why the gateway connection ended
            raise TimeoutError(f"discord: not ready after {self.options.ready_timeout:g} s")
        log.info("discord: connected as %s", self.bot.user)

    async def stop(self) -> None:
        """Close the gateway (no new events); handlers already running finish on their own."""
        await self.bot.close()
        if self._connection is not None:
            await asyncio.gather(self._connection, return_exceptions=True)
