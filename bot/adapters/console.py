"""The terminal chat: the reference adapter, usable without any token."""

from __future__ import annotations

import asyncio
import getpass
import sys
from pathlib import Path

from bot.messages import IncomingMessage
from bot.service import ChatService

CONSOLE = "console"
PROMPT = "you> "


def console_user() -> str:
    return getpass.getuser()


async def chat(service: ChatService, *, prompt: str = PROMPT) -> None:
    """Read lines from stdin until EOF or /quit and print the bot's replies."""
    user = console_user()
    interactive = sys.stdin.isatty()

    async def notify(chat_id: str, text: str, image: Path | None, private: bool) -> None:
        print(f"bot> {text}" if interactive else text, flush=True)
        if image is not None:
            print(f"(plot: {image})", flush=True)

    service.set_notifier(CONSOLE, notify)
    if interactive:
        print("Chatting with the bot. /help for commands, /quit or Ctrl-D to leave.")
    while True:
        line = await asyncio.to_thread(_read_line, prompt if interactive else "")
        if line is None or line.strip() in ("/quit", "/exit"):
            break
        # No message id: the terminal has none, and nothing can reply to a line by its id.
        message = IncomingMessage(CONSOLE, CONSOLE, "private", user, user, line)
        reply = await service.handle(message)
        if reply is not None:
            print(f"bot> {reply.text}" if interactive else reply.text, flush=True)


def _read_line(prompt: str) -> str | None:
    try:
        return input(prompt)
    except EOFError:
        return None
