"""Who may run admin commands: one rule for every platform, with the platform's own facts plugged in."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from bot.messages import IncomingMessage

log = logging.getLogger(__name__)

# Asks the platform whether the message's author administers the chat it was sent in.
ChatAdminCheck = Callable[[IncomingMessage], Awaitable[bool]]


class Permissions:
    def __init__(self, global_admins: Mapping[str, frozenset[str]]) -> None:
        self._global_admins = global_admins
        self._chat_admin_checks: dict[str, ChatAdminCheck] = {}

    def set_chat_admin_check(self, platform: str, check: ChatAdminCheck) -> None:
        """Adapters register how their platform says who administers a chat."""
        self._chat_admin_checks[platform] = check

    def is_global_admin(self, message: IncomingMessage) -> bool:
        return message.user_id in self._global_admins.get(message.platform, frozenset())

    async def is_admin(self, message: IncomingMessage) -> bool:
        """Global admins anywhere; in groups also the chat's administrators (private chats: no)."""
        if self.is_global_admin(message):
            return True
        if message.chat_kind == "private":
            return False
        if message.sender_is_chat:  # an anonymous group admin posts as the chat itself
            return True
        check = self._chat_admin_checks.get(message.platform)
        if check is None:
            return False
        try:
            return await check(message)
        except Exception:
            # A platform that cannot answer means no: refusing is safe, granting is not.
            log.exception("admin check failed on %s for chat %s", message.platform, message.chat_id)
            return False
