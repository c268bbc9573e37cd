"""ChatService with a real engine and a real SQLite file: logging, when to answer, commands, admins."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.commands import COMMANDS, RETRAIN_UNAVAILABLE, CommandContext
from bot.database import Database, open_database
from bot.messages import IncomingMessage
from bot.permissions import Permissions
from bot.recent_turns import RecentTurns
from bot.service import EMPTY_INPUT, NO_REPLY, ChatService
from core_model.config import DecodeConfig
from core_model.engine import InferenceEngine
from storage.models import Message

ADMIN = "1000"
_ids = iter(range(1, 1_000_000))


def private(text: str, user: str = "u1") -> IncomingMessage:
    return IncomingMessage("telegram", f"dm-{user}", "private", user, "Someone", text, message_id=str(next(_ids)))


def group(text: str, user: str = "u1", **flags: object) -> IncomingMessage:
    message = IncomingMessage("telegram", "g1", "group", user, "Someone", text, message_id=str(next(_ids)),
                              chat_title="Friends")
    return replace(message, **flags)  # type: ignore[arg-type]


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = open_database(f"sqlite:///{tmp_path / 'chat.db'}")
    yield db
    db.close()


@pytest.fixture
async def service(model_dir: Path, database: Database) -> AsyncIterator[ChatService]:
    engine = InferenceEngine.from_dir(model_dir, DecodeConfig(strategy="greedy", no_repeat_ngram=0))
    permissions = Permissions({"telegram": frozenset({ADMIN})})
    yield ChatService(engine, database, permissions, cooldown_seconds=60, rng=random.Random(0))
    await engine.close()


def logged(database: Database) -> list[tuple[str | None, bool, int | None]]:
    with database.reads.begin() as session:
        rows = session.execute(select(Message.text, Message.from_bot, Message.reply_to_id).order_by(Message.id))
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def test_answers_with_the_model_and_logs_both_sides(service: ChatService, database: Database) -> None:
    reply = await service.handle(private("hello there"))
    assert reply is not None and reply.text == "hi! how are you?"
    rows = logged(database)
    assert rows[0][:2] == ("hello there", False)
    assert rows[1] == ("hi! how are you?", True, 1)


@pytest.mark.parametrize("text", ["", "   ", "\x00\x01", "\u200b\ufeff"])
async def test_empty_input_gets_a_clear_answer(service: ChatService, text: str) -> None:
    reply = await service.handle(private(text))
    assert reply is not None and reply.text == EMPTY_INPUT


@pytest.mark.parametrize("text", ["가" * 200_000, "😀" * 50_000, "\U0010ffff\ud7a3 mixed", "a\tb\nc"])
async def test_any_unicode_or_huge_input_gets_a_reply(service: ChatService, text: str) -> None:
    reply = await service.handle(private(text))
    assert reply is not None and reply.text


async def test_a_message_sharing_no_character_with_what_the_model_learned_gets_the_no_reply_mark(
        service: ChatService, database: Database) -> None:
    reply = await service.handle(private("你好 🦄"))
    assert reply is not None and reply.text == NO_REPLY
    assert logged(database)[1] == (NO_REPLY, True, 1)


class RecordingEngine:
    """The real engine, with the (prompt, context) of every request it was given."""

    def __init__(self, engine: InferenceEngine) -> None:
        self.engine = engine
        self.requests: list[tuple[str, str]] = []

    async def reply(self, prompt: str, context: str = "") -> str:
        self.requests.append((prompt, context))
        return await self.engine.reply(prompt, context)

    @property
    def metrics(self) -> dict[str, object]:
        return self.engine.metrics


async def test_each_reply_is_given_the_turn_before_its_message_as_context(service: ChatService) -> None:
    engine = RecordingEngine(service.engine)  # type: ignore[arg-type]
    service.engine = engine
    now = [0.0]
    service.turns = RecentTurns(300, clock=lambda: now[0])
    first = await service.handle(private("hello there"))
    await service.handle(private("how are you"))
    await service.handle(replace(private("how are you"), chat_id="elsewhere"))  # another chat
    now[0] += 301  # past the window: a new conversation
    await service.handle(private("what is your name"))
    assert first is not None
    assert engine.requests == [("hello there", ""), ("how are you", first.text), ("how are you", ""),
                               ("what is your name", "")]


async def test_an_opted_out_persons_words_are_no_ones_context(service: ChatService) -> None:
    engine = RecordingEngine(service.engine)  # type: ignore[arg-type]
    service.engine = engine
    await service.handle(group("/optout", user="u2"))
    await service.handle(group("my secret plans", user="u2"))  # counted, not kept, not answered
    await service.handle(group("hello there", user="u1", mentions_bot=True))
    assert engine.requests[-1] == ("hello there", "")


async def test_a_deleted_or_forgotten_message_is_no_ones_context(service: ChatService) -> None:
    engine = RecordingEngine(service.engine)  # type: ignore[arg-type]
    service.engine = engine
    await service.handle(group("my address is secret", user="u2", message_id="41"))
    await service.deleted("telegram", "g1", "41", datetime.now(UTC))
    await service.handle(group("hello there", user="u1", mentions_bot=True))
    await service.handle(group("how are you", user="u2"))
    await service.handle(private("/forget yes", user="u2"))
    await service.handle(group("what is your name", user="u1", mentions_bot=True))
    contexts = dict(engine.requests)
    assert contexts["hello there"] == "" and contexts["what is your name"] == ""


async def test_a_reply_of_the_bots_deleted_on_its_platform_is_no_ones_context(service: ChatService) -> None:
    engine = RecordingEngine(service.engine)  # type: ignore[arg-type]
    service.engine = engine
    first = await service.handle(private("hello there"))
    assert first is not None
    await service.sent(first, "900")
    await service.deleted("telegram", "dm-u1", "900", datetime.now(UTC))  # an admin took it down
    await service.handle(private("how are you"))
    assert engine.requests[-1] == ("how are you", "")


async def test_lone_surrogates_in_text_names_and_titles_are_logged_and_answered(service: ChatService,
                                                                                database: Database) -> None:
    # JSON may carry half an emoji ("\ud83d"), which no UTF-8 database column can hold
    message = replace(group("hello there\ud83d", mentions_bot=True), user_name="Ann\ud83d", chat_title="\ude00Fun")
    reply = await service.handle(message)
    assert reply is not None and reply.text == "hi! how are you?"
    assert [row[:2] for row in logged(database)] == [("hello there", False), ("hi! how are you?", True)]


async def test_group_answers_only_when_addressed_but_logs_everything(
        service: ChatService, database: Database) -> None:
    assert await service.handle(group("hello there")) is None
    assert await service.handle(group("", user="u2")) is None
    assert await service.handle(group("hello there", mentions_bot=True)) is not None
    assert await service.handle(group("안녕하세요", replies_to_bot=True)) is not None
    rows = logged(database)
    assert [text for text, from_bot, _ in rows if not from_bot] == ["hello there", "", "hello there", "안녕하세요"]
    assert sum(from_bot for _, from_bot, _ in rows) == 2


async def test_chattiness_answers_unaddressed_messages_with_a_cooldown(service: ChatService) -> None:
    admin_says = await service.handle(group("/chatty 100", user=ADMIN))
    assert admin_says is not None and "100%" in admin_says.text
    assert await service.handle(group("hello there")) is not None
    assert await service.handle(group("hello there")) is None  # within the 60 s cooldown
    assert await service.handle(group("hello there", mentions_bot=True)) is not None  # addressed: always


async def test_sent_reply_gets_its_platform_id_so_replies_to_it_link(
        service: ChatService, database: Database) -> None:
    reply = await service.handle(private("hello there"))
    assert reply is not None
    await service.sent(reply, "bot-msg-1")
    follow_up = replace(private("thanks"), reply_to_id="bot-msg-1")
    await service.handle(follow_up)
    rows = logged(database)
    assert rows[2][0] == "thanks" and rows[2][2] == reply.row_id


async def test_edits_and_deletions_reach_the_log(service: ChatService, database: Database) -> None:
    message = group("teh typo")
    await service.handle(message)
    now = datetime.now(UTC)
    await service.edited("telegram", "g1", message.message_id or "", "the typo", now)
    assert logged(database)[0][0] == "the typo"
    await service.deleted("telegram", "g1", message.message_id or "", now)
    assert logged(database)[0][0] is None


async def text_of(service: ChatService, message: IncomingMessage) -> str:
    reply = await service.handle(message)
    assert reply is not None
    return reply.text


async def test_help_lists_every_command(service: ChatService) -> None:
    help_text = await text_of(service, private("/help"))
    for name in ("start", "model", "forget", "optout", "optin", "stats", "chatty", "retrain", "rollback"):
        assert f"/{name}" in help_text
    assert await text_of(service, group("/start@some_bot")) == help_text
    assert "Unknown command /nope" in await text_of(service, private("/nope"))


async def test_model_says_how_it_was_trained(service: ChatService, database: Database) -> None:
    answer = await text_of(service, private("/model"))
    assert "8 pairs" in answer and "message before" not in answer  # it learned from no context
    learned_context = CommandContext(private("/model"), "", 1, database, {"train_pairs": 9, "context_pairs": 4})
    assert (await COMMANDS["model"].run(learned_context)).endswith("reads the message before the one it answers too.")


async def test_admin_commands_follow_one_permission_model(service: ChatService) -> None:
    assert "only admins" in await text_of(service, group("/stats", user="member"))
    assert "This chat:" in await text_of(service, group("/stats", user=ADMIN))
    alone = await text_of(service, private("/stats", user=ADMIN))  # a chat with only this message in it
    assert alone.startswith("This chat: 1 message from 1 person, 0 of them my replies."), alone
    assert "This chat:" in await text_of(service, group("/stats", user="anon", sender_is_chat=True))

    async def chat_admins(message: IncomingMessage) -> bool:
        return message.user_id == "chat-admin"

    service.permissions.set_chat_admin_check("telegram", chat_admins)
    assert "This chat:" in await text_of(service, group("/stats", user="chat-admin"))
    # In private chats only global admins may.
    assert "only admins" in await text_of(service, private("/stats", user="chat-admin"))
    assert await text_of(service, private("/retrain", user=ADMIN)) == RETRAIN_UNAVAILABLE


async def test_failing_admin_check_refuses(service: ChatService) -> None:
    async def broken(message: IncomingMessage) -> bool:
        raise ConnectionError("platform down")

    service.permissions.set_chat_admin_check("telegram", broken)
    assert "only admins" in await text_of(service, group("/chatty 50", user="someone"))


async def test_chatty_validates_its_argument(service: ChatService) -> None:
    assert "0 to 100" in await text_of(service, group("/chatty 150", user=ADMIN))
    assert "0%" in await text_of(service, group("/chatty", user=ADMIN))


async def test_forget_needs_confirmation_then_erases(service: ChatService, database: Database) -> None:
    await service.handle(group("my secret", user="leaver"))
    assert "/forget yes" in await text_of(service, group("/forget", user="leaver"))
    assert "my secret" in [text for text, _, _ in logged(database)]
    assert "3 of your messages erased" in await text_of(service, group("/forget yes", user="leaver"))
    texts = [text for text, from_bot, _ in logged(database) if not from_bot]
    assert texts == [None, None, None]  # the two /forget messages too


async def test_optout_stops_keeping_words_and_optin_resumes(service: ChatService, database: Database) -> None:
    await service.handle(group("/optout", user="shy"))
    await service.handle(group("not kept", user="shy"))
    await service.handle(group("/optin", user="shy"))
    await service.handle(group("kept again", user="shy"))
    texts = [text for text, from_bot, _ in logged(database) if not from_bot]
    assert texts == ["/optout", None, None, "kept again"]  # /optin itself came while opted out


async def test_a_redelivered_message_is_answered_once(service: ChatService, database: Database) -> None:
    message = private("hello there")
    assert await service.handle(message) is not None
    assert await service.handle(message) is None
    assert len(logged(database)) == 2


async def test_an_addressed_message_is_decoded_while_it_is_being_logged(service: ChatService,
                                                                          database: Database) -> None:
    writer_free = threading.Event()
    database.writer.submit(lambda session: writer_free.wait(10))  # the log write has to queue behind this
    handling = asyncio.create_task(service.handle(private("hello there")))
    engine = service.engine
    assert isinstance(engine, InferenceEngine)
    for _ in range(1000):  # until the engine has decoded it
        if engine.stats.replies:
            break
        await asyncio.sleep(0.01)
    assert engine.stats.replies == 1 and not handling.done()  # decoded, while its log write still waits
    writer_free.set()
    reply = await handling
    assert reply is not None and reply.text == "hi! how are you?"
    assert logged(database) == [("hello there", False, None), ("hi! how are you?", True, 1)]


async def test_a_message_that_cannot_be_logged_gets_no_reply(service: ChatService, database: Database) -> None:
    database.writer.close()  # every write now fails
    with pytest.raises(RuntimeError, match="database writer is closed"):
        await service.handle(private("hello there"))  # the early decode is abandoned, the write's error raised
    await asyncio.sleep(0)
    assert all(task.done() or task is asyncio.current_task() for task in asyncio.all_tasks())
