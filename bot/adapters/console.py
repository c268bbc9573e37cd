"""The terminal chat: the reference adapter, usable without any token."""

from __future__ import annotations

import asyncio
import getpass
import sys

from bot.service import ChatService, IncomingMessage

PROMPT = "you> "


async def chat(service: ChatService, *, prompt: str = PROMPT) -> None:
    """Read lines from stdin until EOF or /quit and print the bot's replies."""
    user = getpass.getuser()
    interactive = sys.stdin.isatty()
    if interactive:
        print("Chatting with the bot. /help for commands, /quit or Ctrl-D to leave.")
    while True:
        line = await asyncio.to_thread(_read_line, prompt if interactive else "")
        if line is None or line.strip() in ("/quit", "/exit"):
            break
        message = IncomingMessage("console", "console", "private", user, user, line)
        reply = await service.handle(message)
        if reply is not None:
            print(f"bot> {reply}" if interactive else reply, flush=True)


def _read_line(prompt: str) -> str | None:
    try:
        return input(prompt)
    except EOFError:
        return None
