"""ChatService: the one transport-agnostic entry point every adapter hands its messages to."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

from core_model.tokenizer import normalize

ChatKind = Literal["private", "group", "channel"]

MAX_INPUT_CHARS = 4000  # longer messages are cut; the model reads only the last tokens anyway


@dataclass(frozen=True)
class IncomingMessage:
    platform: str
    chat_id: str
    chat_kind: ChatKind
    user_id: str
    user_name: str
    text: str
    message_id: str = ""
    reply_to_id: str | None = None
    thread_id: str | None = None
    mentions_bot: bool = False
    replies_to_bot: bool = False
    sent_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class ReplyEngine(Protocol):
    async def reply(self, prompt: str, context: str = "") -> str: ...

    @property
    def metrics(self) -> dict[str, object]: ...


HELP = (
    "I am a Seq2Seq chatbot: write to me and I answer.\n"
    "/help  this text\n"
    "/model  which model answers you"
)
EMPTY_INPUT = "I only read text: write me a few words."
NO_REPLY = "…"  # the model produced no token (e.g. it ended at once)


class ChatService:
    def __init__(self, engine: ReplyEngine) -> None:
        self.engine = engine

    async def handle(self, message: IncomingMessage) -> str | None:
        """The reply to send, or None when the bot stays silent."""
        text = normalize(message.text[:MAX_INPUT_CHARS])
        if text.startswith("/"):
            return self._command(text)
        if not text:
            return EMPTY_INPUT
        return await self.engine.reply(text) or NO_REPLY

    def _command(self, text: str) -> str:
        name = text.split()[0].split("@")[0].lower()
        if name in ("/start", "/help"):
            return HELP
        if name == "/model":
            m = self.engine.metrics
            return (f"Seq2Seq model trained on {m.get('train_pairs', '?')} pairs, "
                    f"validation {m.get('valid_bits_per_char', float('nan')):.3f} bits/char.")
        return f"Unknown command {name}. Try /help."
