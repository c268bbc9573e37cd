"""The last turn of each conversation, kept in memory: the context a reply is given.

A model retrained on the conversations learned each prompt with the turn before it as its context
(storage/mining.py), so it is given the same at serving: the message before the one it answers,
in the same chat and thread, if that came within the mining window of it. The bot's own replies
are turns too. Turns are timed by the bot's clock as they arrive (platforms stamp messages to the
second only). Only the latest turn of each conversation is kept, for the most recently active
conversations, and nothing survives a restart: a restarted bot's first reply has no context.
A turn edited is read as edited; one deleted on its platform (a reply of the bot's too), or erased
by its author's /forget, is no one's context.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from bot.messages import Conversation


@dataclass(frozen=True, slots=True)
class _Turn:
    text: str
    at: float  # the clock's reading when it arrived
    author_id: str | None  # None for the bot's own replies
    message_id: str | None  # a reply's once the platform has taken it (see sent)
    reply_row: int | None = None  # the logged row of a reply of the bot's


class RecentTurns:
    def __init__(self, window_seconds: float, max_conversations: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window_seconds = window_seconds
        self.max_conversations = max_conversations
        self._clock = clock
        self._last: OrderedDict[Conversation, _Turn] = OrderedDict()

    def context(self, conversation: Conversation) -> str:
        """The text of the conversation's last turn, if it came within the window."""
        last = self._last.get(conversation)
        if last is None or self._clock() - last.at > self.window_seconds:
            return ""
        return last.text

    def add(self, conversation: Conversation, text: str, author_id: str | None = None,
            message_id: str | None = None, reply_row: int | None = None) -> None:
        """text (by author_id, None for the bot) is now the conversation's last turn."""
        self._last[conversation] = _Turn(text, self._clock(), author_id, message_id, reply_row)
        self._last.move_to_end(conversation)
        if len(self._last) > self.max_conversations:
            self._last.popitem(last=False)  # the conversation quiet the longest

    def sent(self, conversation: Conversation, reply_row: int, message_id: str) -> None:
        """The platform took the bot's reply logged as reply_row and gave it message_id (so that
        deleting it there reaches its turn)."""
        last = self._last.get(conversation)
        if last is not None and last.reply_row == reply_row:
            self._last[conversation] = replace(last, message_id=message_id)

    def deleted(self, platform: str, chat_id: str, message_id: str) -> None:
        """A message was deleted: if it is a conversation's last turn, that conversation has none."""
        for key in self._turns_of_message(platform, chat_id, message_id):
            del self._last[key]

    def edited(self, platform: str, chat_id: str, message_id: str, text: str) -> None:
        """A message was edited: if it is a conversation's last turn, its new text is the context."""
        for key in self._turns_of_message(platform, chat_id, message_id):
            self._last[key] = replace(self._last[key], text=text)

    def forget_author(self, platform: str, author_id: str) -> None:
        """A person's words are erased (/forget): their turns are no one's context."""
        for key in [key for key, turn in self._last.items() if key[0] == platform and turn.author_id == author_id]:
            del self._last[key]

    def _turns_of_message(self, platform: str, chat_id: str, message_id: str) -> list[Conversation]:
        """The conversations whose last turn is that message (a scan: edits and deletions are rare)."""
        return [key for key, turn in self._last.items()
                if key[:2] == (platform, chat_id) and turn.message_id == message_id]
