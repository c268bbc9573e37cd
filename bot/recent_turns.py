"""The last turn of each conversation, kept in memory: the context a reply is given.

A model retrained on the conversations learned each prompt with the turn before it as its context
(storage/mining.py), so it is given the same at serving: the message before the one it answers,
in the same chat and thread, if that came within the mining window of it. The bot's own replies
are turns too. Turns are timed by the bot's clock as they arrive (platforms stamp messages to the
second only). Only the latest turn of each conversation is kept, for the most recently active
conversations, and nothing survives a restart: a restarted bot's first reply has no context.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

# (platform, chat id, thread id): a thread is a conversation of its own, as the miner sees it.
Conversation = tuple[str, str, str | None]


class RecentTurns:
    def __init__(self, window_seconds: float, max_conversations: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window_seconds = window_seconds
        self.max_conversations = max_conversations
        self._clock = clock
        self._last: OrderedDict[Conversation, tuple[str, float]] = OrderedDict()

    def context(self, conversation: Conversation) -> str:
        """The text of the conversation's last turn, if it came within the window."""
        last = self._last.get(conversation)
        if last is None or self._clock() - last[1] > self.window_seconds:
            return ""
        return last[0]

    def add(self, conversation: Conversation, text: str) -> None:
        """text is now the conversation's last turn."""
        self._last[conversation] = (text, self._clock())
        self._last.move_to_end(conversation)
        if len(self._last) > self.max_conversations:
            self._last.popitem(last=False)  # the conversation quiet the longest
