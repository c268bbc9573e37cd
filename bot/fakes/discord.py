"""A fake Discord (REST under /api/v10 and the gateway websocket) on 127.0.0.1, for discord.py.

Tests point discord.py at it (`patch_client`), push messages and interactions in through the
gateway, and read the REST calls the bot made (`calls`, `next_sent`). The message-content intent
rule is applied as Discord applies it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yarl
from aiohttp import WSMsgType, web
from aiohttp.web_request import FileField

from bot.fakes.loopback import serve_on_loopback

APP_ID = 555_000
BOT_ID = 555_001
GUILD_ID = 777_000
CHANNEL_ID = 777_100
OWNER_ID = 1
MANAGER_ROLE = 777_900
MESSAGE_CONTENT_INTENT = 1 << 15
MANAGE_GUILD = 1 << 5


@contextlib.contextmanager
def point_discord_at(port: int) -> Iterator[None]:
    """Point discord.py's REST and gateway at a fake on this loopback port, within the block."""
    import discord.gateway
    import discord.http

    saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = f"http://127.0.0.1:{port}/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"ws://127.0.0.1:{port}/")
    try:
        yield
    finally:
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved


def user(user_id: int, name: str | None = None, *, bot: bool = False) -> dict[str, Any]:
    return {"id": str(user_id), "username": name or f"user{user_id}", "discriminator": "0",
            "global_name": name or f"User {user_id}", "avatar": None, "bot": bot}


@dataclass
class FakeDiscord:
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    # user id -> role ids in the guild
    members: dict[int, list[int]] = field(default_factory=lambda: {OWNER_ID: [], 2: [], 3: [MANAGER_ROLE]})
    faults: dict[str, list[tuple[int, dict[str, Any], dict[str, str]]]] = field(default_factory=dict)
    heartbeat_interval_ms: int = 41_250
    heartbeats: list[float] = field(default_factory=list)
    intents: int = 0
    # Text channels in the guild: CHANNEL_ID, CHANNEL_ID + 1, ...
    channel_count: int = 1
    port: int = 0
    _sockets: list[web.WebSocketResponse] = field(default_factory=list)
    _sequence: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(900_000_000))
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _sent_seen: int = 0
    _inboxes: dict[int, asyncio.Queue[dict[str, Any]]] = field(default_factory=dict)
    _identified: int = 0  # IDENTIFY or RESUME handshakes so far
    _runner: web.AppRunner | None = None

    # Server ---------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._gateway)
        app.router.add_route("*", "/api/v10/{path:.*}", self._rest)
        self._runner, self.port = await serve_on_loopback(app)

    async def stop(self) -> None:
        for socket in list(self._sockets):
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def patch_client(self) -> contextlib.AbstractContextManager[None]:
        """Point discord.py's REST and gateway at this fake, for the duration of the block."""
        return point_discord_at(self.port)

    # What tests do -------------------------------------------------------------------------

    async def push_message(self, content: str, *, author: int = 2, channel: int = CHANNEL_ID,
                           mentions_bot: bool = False, reply_to: dict[str, Any] | None = None,
                           guild: bool = True) -> dict[str, Any]:
        mentions = [user(BOT_ID, "chatbot", bot=True)] if mentions_bot else []
        message: dict[str, Any] = {
            "id": str(next(self._ids)), "channel_id": str(channel), "author": user(author),
            "content": content, "timestamp": datetime.now(UTC).isoformat(), "edited_timestamp": None,
            "tts": False, "mention_everyone": False, "mentions": mentions, "mention_roles": [],
            "attachments": [], "embeds": [], "pinned": False, "type": 0 if reply_to is None else 19,
        }
        if guild:
            message["guild_id"] = str(GUILD_ID)
            message["member"] = {"roles": [str(role) for role in self.members.get(author, [])],
                                 "joined_at": "2026-01-01T00:00:00+00:00", "deaf": False, "mute": False, "flags": 0}
        if reply_to is not None:
            message["message_reference"] = {"message_id": reply_to["id"], "channel_id": reply_to["channel_id"],
                                            "guild_id": str(GUILD_ID)}
            message["referenced_message"] = reply_to
        await self.dispatch("MESSAGE_CREATE", self._visible(message))
        return message

    async def push_delete(self, message: dict[str, Any]) -> None:
        await self.dispatch("MESSAGE_DELETE", {"id": message["id"], "channel_id": message["channel_id"],
                                               "guild_id": str(GUILD_ID)})

    async def push_slash(self, name: str, *, author: int = 2, args: str | None = None) -> dict[str, Any]:
        interaction_id = next(self._ids)
        options = [{"name": "args", "type": 3, "value": args}] if args is not None else []
        payload = {
            "id": str(interaction_id), "application_id": str(APP_ID), "type": 2, "token": f"token-{interaction_id}",
            "version": 1, "guild_id": str(GUILD_ID), "channel_id": str(CHANNEL_ID),
            "channel": {"id": str(CHANNEL_ID), "type": 0, "guild_id": str(GUILD_ID), "name": "general"},
            "member": {"user": user(author), "roles": [str(r) for r in self.members.get(author, [])],
                       "joined_at": "2026-01-01T00:00:00+00:00", "deaf": False, "mute": False, "flags": 0,
                       "permissions": str(self._permissions(author))},
            "data": {"id": str(next(self._ids)), "name": name, "type": 1, "options": options},
            "locale": "en-US", "guild_locale": "en-US", "app_permissions": str((1 << 53) - 1),
            "entitlements": [], "authorizing_integration_owners": {}, "context": 0,
            "attachment_size_limit": 8_388_608,
        }
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload

    async def drop_connections(self) -> None:
        """Close every gateway socket as a network failure would; the client must come back."""
        for socket in list(self._sockets):
            await socket.close(code=4000)

    def fail_next(self, method: str, path_suffix: str, status: int, body: dict[str, Any],
                  headers: dict[str, str] | None = None) -> None:
        self.faults.setdefault(f"{method} {path_suffix}", []).append((status, body, headers or {}))

    def requests(self, method: str, path_suffix: str) -> list[Any]:
        return [body for verb, path, body in self.calls if verb == method and path.endswith(path_suffix)]

    async def next_sent(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next message the bot posted (to a channel or as an interaction response)."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while len(self._posted()) <= self._sent_seen:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("the bot sent nothing")
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    continue
        self._sent_seen += 1
        return self._posted()[self._sent_seen - 1]

    async def wait_connected(self, count: int = 1, timeout: float = 10.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self._identified >= count), timeout)

    # Gateway ------------------------------------------------------------------------------

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        for socket in list(self._sockets):
            await socket.send_str(json.dumps({"op": 0, "t": event, "s": next(self._sequence), "d": data}))

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        await socket.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}}))
        async for frame in socket:
            if frame.type != WSMsgType.TEXT:
                continue
            payload = json.loads(frame.data)
            if payload["op"] == 1:
                self.heartbeats.append(time.monotonic())
                await socket.send_str(json.dumps({"op": 11}))
            elif payload["op"] in (2, 6):  # IDENTIFY, or RESUME after a dropped connection
                self.intents = int(payload["d"].get("intents", self.intents))
                self._sockets.append(socket)
                await self._ready(socket, resumed=payload["op"] == 6)
                async with self._changed:
                    self._identified += 1
                    self._changed.notify_all()
        if socket in self._sockets:
            self._sockets.remove(socket)
        return socket

    async def _ready(self, socket: web.WebSocketResponse, *, resumed: bool) -> None:
        async def send(event: str, data: dict[str, Any]) -> None:
            await socket.send_str(json.dumps({"op": 0, "t": event, "s": next(self._sequence), "d": data}))

        if resumed:
            await send("RESUMED", {})
            return
        await send("READY", {
            "v": 10, "user": user(BOT_ID, "chatbot", bot=True), "guilds": [{"id": str(GUILD_ID), "unavailable": True}],
            "session_id": "fake-session", "resume_gateway_url": f"ws://127.0.0.1:{self.port}/",
            "application": {"id": str(APP_ID), "flags": 0}, "private_channels": [], "relationships": [],
        })
        await send("GUILD_CREATE", self._guild())

    def _guild(self) -> dict[str, Any]:
        roles = [
            {"id": str(GUILD_ID), "name": "@everyone", "permissions": str(1024 | 2048), "position": 0, "color": 0,
             "hoist": False, "managed": False, "mentionable": False, "flags": 0},
            {"id": str(MANAGER_ROLE), "name": "managers", "permissions": str(1024 | 2048 | MANAGE_GUILD),
             "position": 1, "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0},
        ]
        members = [{"user": user(member_id), "roles": [str(r) for r in roles_of], "joined_at": "2026-01-01T00:00:00+00:00",
                    "deaf": False, "mute": False, "flags": 0} for member_id, roles_of in self.members.items()]
        members.append({"user": user(BOT_ID, "chatbot", bot=True), "roles": [],
                        "joined_at": "2026-01-01T00:00:00+00:00", "deaf": False, "mute": False, "flags": 0})
        return {
            "id": str(GUILD_ID), "name": "Test guild", "owner_id": str(OWNER_ID), "roles": roles,
            "channels": [{"id": str(CHANNEL_ID + i), "type": 0, "name": f"channel-{i}", "position": i,
                          "permission_overwrites": [], "guild_id": str(GUILD_ID)}
                         for i in range(self.channel_count)],
            "members": members, "member_count": len(members), "large": False, "unavailable": False,
            "features": [], "emojis": [], "stickers": [], "voice_states": [], "presences": [], "threads": [],
            "stage_instances": [], "guild_scheduled_events": [], "icon": None, "splash": None,
            "verification_level": 0, "default_message_notifications": 0, "explicit_content_filter": 0,
            "mfa_level": 0, "premium_tier": 0, "preferred_locale": "en-US", "nsfw_level": 0,
            "joined_at": "2026-01-01T00:00:00+00:00",
        }

    def _permissions(self, member_id: int) -> int:
        value = 1024 | 2048
        if MANAGER_ROLE in self.members.get(member_id, []) or member_id == OWNER_ID:
            value |= MANAGE_GUILD
        return value

    def _visible(self, message: dict[str, Any]) -> dict[str, Any]:
        """Without the message-content intent, content is empty unless the bot is mentioned or in a DM."""
        if self.intents & MESSAGE_CONTENT_INTENT or "guild_id" not in message:
            return message
        if any(mention["id"] == str(BOT_ID) for mention in message["mentions"]):
            return message
        return {**message, "content": ""}

    # REST ---------------------------------------------------------------------------------

    def _posted(self) -> list[dict[str, Any]]:
        posted = []
        for verb, path, body in self.calls:
            if verb == "POST" and path.endswith("/messages"):
                posted.append(body)
            elif verb == "POST" and path.endswith("/callback"):
                posted.append(body["data"])
            elif verb == "POST" and path.startswith("webhooks/"):
                posted.append(body)
        return posted

    async def _rest(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        body: Any = None
        if request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
            else:  # multipart: discord.py puts the JSON in "payload_json", files beside it
                form = await request.post()
                body = json.loads(str(form.get("payload_json", "{}")))
                body["uploaded"] = [field.filename for key, field in form.items()
                                    if key.startswith("files[") and isinstance(field, FileField)]
        for key, queued in self.faults.items():
            verb, suffix = key.split(" ", 1)
            if verb == request.method and path.endswith(suffix) and queued:
                status, error, headers = queued.pop(0)
                self.calls.append((f"{request.method}!failed", path, body))
                return _json(status, error, headers)
        result, status = self._answer(request.method, path, body)
        async with self._changed:
            self.calls.append((request.method, path, body))
            self._changed.notify_all()
        if status == 204:
            return web.Response(status=204)
        return _json(status, result)

    def _answer(self, method: str, path: str, body: Any) -> tuple[Any, int]:
        parts = path.split("/")
        if path == "users/@me":
            return user(BOT_ID, "chatbot", bot=True), 200
        if path == "oauth2/applications/@me":
            return {"id": str(APP_ID), "name": "chatbot", "description": "", "icon": None, "bot_public": True,
                    "bot_require_code_grant": False, "owner": user(OWNER_ID), "verify_key": "0" * 64,
                    "flags": 0}, 200
        if method == "PUT" and parts[0] == "applications" and parts[-1] == "commands":
            return [{**command, "id": str(next(self._ids)), "application_id": str(APP_ID), "version": "1",
                     "default_member_permissions": command.get("default_member_permissions")}
                    for command in body], 200
        if method == "POST" and parts[0] == "channels" and parts[-1] == "typing":
            return None, 204
        if method == "POST" and parts[0] == "channels" and parts[-1] == "messages":
            return self._message(parts[1], body), 200
        if method == "POST" and parts[0] == "interactions":
            message = self._message(str(CHANNEL_ID), body.get("data", {}))
            return {"interaction": {"id": parts[1], "type": 2, "response_message_id": message["id"]},
                    "resource": {"type": body["type"], "message": message}}, 200
        if method == "POST" and parts[0] == "webhooks":
            return self._message(str(CHANNEL_ID), body), 200
        if method == "GET" and parts[0] == "guilds" and parts[2] == "members":
            member_id = int(parts[3])
            return {"user": user(member_id), "roles": [str(r) for r in self.members.get(member_id, [])],
                    "joined_at": "2026-01-01T00:00:00+00:00", "deaf": False, "mute": False, "flags": 0}, 200
        return {"message": "404: Not Found", "code": 0}, 404

    async def reply_in(self, channel_id: int) -> dict[str, Any]:
        """Wait for the bot's next message in one channel (benchmarks drive many at once)."""
        return await self._inbox(channel_id).get()

    def _inbox(self, channel_id: int) -> asyncio.Queue[dict[str, Any]]:
        return self._inboxes.setdefault(channel_id, asyncio.Queue())

    def _message(self, channel_id: str, body: dict[str, Any]) -> dict[str, Any]:
        message = {"id": str(next(self._ids)), "channel_id": channel_id, "guild_id": str(GUILD_ID),
                "author": user(BOT_ID, "chatbot", bot=True), "content": body.get("content", ""),
                "timestamp": datetime.now(UTC).isoformat(), "edited_timestamp": None, "tts": False,
                "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": [],
                "embeds": [], "pinned": False, "type": 0 if "message_reference" not in body else 19}
        if body.get("message_reference"):
            message["message_reference"] = body["message_reference"]
        self._inbox(int(channel_id)).put_nowait(message)
        return message


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    # discord.py reads a body as JSON only when the content type is exactly application/json.
    return web.Response(status=status, body=json.dumps(body).encode(),
                        headers={"Content-Type": "application/json", **(headers or {})})
