from pathlib import Path

import pytest

from bot.service import EMPTY_INPUT, HELP, ChatService, IncomingMessage
from core_model.config import DecodeConfig
from core_model.engine import InferenceEngine


def message(text: str) -> IncomingMessage:
    return IncomingMessage("console", "c1", "private", "u1", "someone", text)


@pytest.fixture()
async def service(model_dir: Path):
    engine = InferenceEngine.from_dir(model_dir, DecodeConfig(strategy="greedy", no_repeat_ngram=0))
    yield ChatService(engine)
    await engine.close()


async def test_answers_with_the_model(service: ChatService) -> None:
    assert await service.handle(message("hello there")) == "hi! how are you?"


@pytest.mark.parametrize("text", ["", "   ", "\x00\x01", "\u200b\ufeff"])
async def test_empty_input_gets_a_clear_answer(service: ChatService, text: str) -> None:
    assert await service.handle(message(text)) == EMPTY_INPUT


@pytest.mark.parametrize("text", ["가" * 200_000, "😀" * 50_000, "\U0010ffff\ud7a3 mixed", "a\tb\nc"])
async def test_any_unicode_or_huge_input_gets_a_reply(service: ChatService, text: str) -> None:
    reply = await service.handle(message(text))
    assert isinstance(reply, str) and reply


async def test_commands(service: ChatService) -> None:
    assert await service.handle(message("/help")) == HELP
    assert await service.handle(message("/start@some_bot")) == HELP
    assert "8 pairs" in (await service.handle(message("/model")) or "")
    assert "Unknown command /nope" in (await service.handle(message("/nope")) or "")
