"""A fake Telegram Bot API on 127.0.0.1, enough for python-telegram-bot's real client.

Tests push updates in (`push_message`), and read what the bot called (`calls`, `sent`). A
`getUpdates` long poll wakes as soon as an update is pushed. Faults are queued per method.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.web_request import FileField

from bot.fakes.loopback import serve_on_loopback

BOT_ID = 999_000
BOT_USERNAME = "test_chatbot"
ANONYMOUS_ADMIN_ID = 1087968824  # Telegram's GroupAnonymousBot


@dataclass
class Call:
    method: str
    params: dict[str, Any]


@dataclass
class FakeTelegram:
    token: str = "123:TEST"
    calls: list[Call] = field(default_factory=list)
    # Update ids handed to the bot by getUpdates.
    delivered: set[int] = field(default_factory=set)
    # chat id -> user id -> status ("member", "administrator", "creator")
    members: dict[int, dict[int, str]] = field(default_factory=dict)
    # method -> queued (HTTP status, JSON body) answered instead of the real one, oldest first
    faults: dict[str, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    _updates: list[dict[str, Any]] = field(default_factory=list)
    _update_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _message_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(10_000))
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _runner: web.AppRunner | None = None
    _closing: bool = False
    _inboxes: dict[int, asyncio.Queue[dict[str, Any]]] = field(default_factory=dict)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        self._runner, self.port = await serve_on_loopback(app)

    async def stop(self) -> None:
        # Release any long poll still waiting, or the server would wait for it to time out.
        async with self._changed:
            self._closing = True
            self._changed.notify_all()
        if self._runner is not None:
            await self._runner.cleanup()

    # What tests do -------------------------------------------------------------------------

    async def push_message(self, text: str, *, chat_id: int = -100, user_id: int = 1, chat_type: str = "supergroup",
                           reply_to: dict[str, Any] | None = None, edited: bool = False,
                           message_id: int | None = None, sender_chat: bool = False,
                           thread_id: int | None = None) -> dict[str, Any]:
        """Deliver a text message as if `user_id` wrote it in `chat_id`; returns the message."""
        chat = {"id": chat_id, "type": chat_type}
        if chat_type != "private":
            chat["title"] = "Test group"
        sender = ({"id": ANONYMOUS_ADMIN_ID, "is_bot": True, "first_name": "Group", "username": "GroupAnonymousBot"}
                  if sender_chat else {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"})
        message: dict[str, Any] = {
            "message_id": message_id or next(self._message_ids), "date": int(time.time()), "chat": chat,
            "from": sender, "text": text, "entities": _entities(text),
        }
        if sender_chat:
            message["sender_chat"] = chat
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        if edited:
            message["edit_date"] = int(time.time())
        async with self._changed:
            update_id = next(self._update_ids)
            self._updates.append({"update_id": update_id, "edited_message" if edited else "message": message})
            message["update_id"] = update_id  # for tests only; PTB ignores unknown fields
            self._changed.notify_all()
        return message

    def fail_next(self, method: str, status: int, description: str, **parameters: Any) -> None:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        self.faults.setdefault(method, []).append((status, body))

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        return [call.params for call in self.calls if call.method == method]

    async def next_sent(self, timeout: float = 10.0) -> dict[str, Any]:
        """Wait for the next sendMessage not yet returned by this method."""
        seen = getattr(self, "_sent_seen", 0)
        deadline = time.monotonic() + timeout
        async with self._changed:
            while len(self.calls_to("sendMessage")) <= seen:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("the bot sent no message")
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    continue
        self._sent_seen = seen + 1
        return self.calls_to("sendMessage")[seen]

    # The API --------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            return _json(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        try:
            form = await request.post()
        except ConnectionResetError:  # the client hung up mid-request (a bot that is stopping)
            return _json(499, {"ok": False, "error_code": 499, "description": "Client closed the connection"})
        params = {key: value if key == "text" else _decode(value) for key, value in form.items()}
        queued = self.faults.get(method)
        if queued:
            self.calls.append(Call(f"{method}!failed", params))
            return _json(*queued.pop(0))
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return _json(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        result = await handler(params)
        async with self._changed:
            self.calls.append(Call(method, params))
            self._changed.notify_all()
        return _json(200, {"ok": True, "result": result})

    async def _api_getMe(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"id": BOT_ID, "is_bot": True, "first_name": "Chatbot", "username": BOT_USERNAME,
                "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}

    async def _api_deleteWebhook(self, params: dict[str, Any]) -> bool:
        return True

    async def _api_setMyCommands(self, params: dict[str, Any]) -> bool:
        return True

    async def _api_sendChatAction(self, params: dict[str, Any]) -> bool:
        return True

    async def _api_getUpdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        async with self._changed:
            self._updates = [update for update in self._updates if update["update_id"] >= offset]
            if not self._updates and timeout:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: bool(self._updates) or self._closing), timeout)
            self.delivered.update(update["update_id"] for update in self._updates)
            return list(self._updates)

    async def reply_in(self, chat_id: int) -> dict[str, Any]:
        """Wait for the bot's next message in one chat (benchmarks drive many chats at once)."""
        return await self._inbox(chat_id).get()

    def _inbox(self, chat_id: int) -> asyncio.Queue[dict[str, Any]]:
        return self._inboxes.setdefault(chat_id, asyncio.Queue())

    async def _api_sendMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        message = {"message_id": next(self._message_ids), "date": int(time.time()),
                   "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"},
                   "from": {"id": BOT_ID, "is_bot": True, "first_name": "Chatbot", "username": BOT_USERNAME},
                   "text": params["text"]}
        params["result"] = message
        self._inbox(chat_id).put_nowait(message)
        return message

    async def _api_sendPhoto(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        photo = params.get("photo")
        params["photo_bytes"] = len(photo.file.read()) if isinstance(photo, FileField) else 0
        return {"message_id": next(self._message_ids), "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"},
                "from": {"id": BOT_ID, "is_bot": True, "first_name": "Chatbot", "username": BOT_USERNAME},
                "photo": [{"file_id": "photo-1", "file_unique_id": "p1", "width": 700, "height": 400}]}

    async def _api_getChatMember(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id, user_id = int(params["chat_id"]), int(params["user_id"])
        status = self.members.get(chat_id, {}).get(user_id, "member")
        user = {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}
        member: dict[str, Any] = {"status": status, "user": user}
        if status == "administrator":
            member.update({flag: True for flag in (
                "can_be_edited", "is_anonymous", "can_manage_chat", "can_delete_messages",
                "can_manage_video_chats", "can_restrict_members", "can_promote_members", "can_change_info",
                "can_invite_users", "can_post_stories", "can_edit_stories", "can_delete_stories")})
        elif status == "creator":
            member["is_anonymous"] = False
        return member


def _entities(text: str) -> list[dict[str, Any]]:
    """Telegram marks @mentions and a leading /command; offsets count UTF-16 code units."""
    entities = []
    if text.startswith("/"):
        head = text.split()[0]
        entities.append({"type": "bot_command", "offset": 0, "length": _utf16_len(head)})
    position = 0
    for word in text.split(" "):
        if word.startswith("@") and len(word) > 1:
            entities.append({"type": "mention", "offset": _utf16_len(text[:position]), "length": _utf16_len(word)})
        position += len(word) + 1
    return entities


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _decode(value: Any) -> Any:
    # python-telegram-bot sends strings raw and everything else JSON-encoded.
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status)
