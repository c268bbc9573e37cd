"""Every pair-mining rule, on small hand-made chats."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from storage.filters import TextFilter
from storage.messages import log_reply, record_deletion, record_sent
from storage.mining import MinedPair, MiningRules, mine_pairs
from storage.people import forget_person, set_opted_out
from tests.storage.conftest import at, say

OPEN = MiningRules(max_person_share=1.0)


def pairs(session: Session, rules: MiningRules = OPEN) -> list[tuple[str, str]]:
    return [(pair.prompt, pair.reply) for pair in mine_pairs(session, rules)]


def test_adjacent_messages_by_different_people_within_the_window(session: Session) -> None:
    say(session, "alice", "점심 뭐 먹을까? 🍜", 0)
    say(session, "bob", "김치찌개 어때", 60)
    say(session, "bob", "아니면 라면", 70)  # same speaker: not a reply to himself
    say(session, "alice", "much later", 70 + 301)  # outside the 5-minute window
    assert pairs(session) == [("점심 뭐 먹을까? 🍜", "김치찌개 어때")]


def test_window_is_a_rule(session: Session) -> None:
    say(session, "alice", "ping", 0)
    say(session, "bob", "pong", 600)
    assert pairs(session) == []
    assert pairs(session, MiningRules(window=timedelta(minutes=15), max_person_share=1.0)) == [("ping", "pong")]


def test_explicit_reply_link_wins_over_adjacency(session: Session) -> None:
    say(session, "alice", "who is coming on friday?", 0, message_id="1")
    say(session, "carol", "unrelated chatter", 10, message_id="2")
    say(session, "bob", "me!", 20, message_id="3", reply_to="1")
    assert pairs(session) == [("who is coming on friday?", "unrelated chatter"),
                              ("who is coming on friday?", "me!")]


def test_explicit_reply_ignores_the_window(session: Session) -> None:
    say(session, "alice", "anyone read the book?", 0, message_id="1")
    say(session, "bob", "finally did, loved it", 86_400, message_id="2", reply_to="1")
    assert pairs(session) == [("anyone read the book?", "finally did, loved it")]


def test_reply_to_an_unusable_message_is_not_paired_by_adjacency(session: Session) -> None:
    say(session, "alice", "what time?", 0, message_id="1")
    say(session, "bob", "answering something we never saw", 5, message_id="2", reply_to="999")
    say(session, "carol", "deleted soon", 6, message_id="3")
    say(session, "alice", "replying to the deleted one", 7, message_id="4", reply_to="3")
    record_deletion(session, platform="telegram", chat_id="g1", message_id="3", deleted_at=at(8))
    assert pairs(session) == []


def test_replying_to_oneself_is_not_a_pair(session: Session) -> None:
    say(session, "alice", "first thought", 0, message_id="1")
    say(session, "alice", "second thought", 5, message_id="2", reply_to="1")
    assert pairs(session) == []


def test_bot_is_never_the_reply_but_may_be_the_prompt(session: Session) -> None:
    question = say(session, "alice", "hi bot", 0, message_id="1")
    reply_id = log_reply(session, answers=question, text="hello human", created_at=at(1))
    record_sent(session, row_id=reply_id, message_id="2")
    say(session, "bob", "bot said hello", 2, message_id="3")  # adjacency after the bot: no pair
    say(session, "alice", "you are polite", 3, message_id="4", reply_to="2")
    assert pairs(session) == [("hello human", "you are polite")]


def test_threads_are_separate_conversations(session: Session) -> None:
    say(session, "alice", "topic A question", 0, thread="A")
    say(session, "bob", "topic B question", 1, thread="B")
    say(session, "carol", "topic A answer", 2, thread="A")
    say(session, "dave", "topic B answer", 3, thread="B")
    assert sorted(pairs(session)) == [("topic A question", "topic A answer"),
                                      ("topic B question", "topic B answer")]


def test_chats_are_separate_conversations(session: Session) -> None:
    say(session, "alice", "in chat one", 0, chat="one")
    say(session, "bob", "in chat two", 1, chat="two")
    assert pairs(session) == []


def test_opted_out_people_contribute_nothing_even_from_before(session: Session) -> None:
    say(session, "alice", "said before opting out", 0)
    say(session, "bob", "answer to alice", 10)
    say(session, "alice", "alice again", 20)
    set_opted_out(session, platform="telegram", external_id="alice", opted_out=True)
    assert pairs(session) == []


def test_forgotten_people_drop_out_of_the_next_snapshot(session: Session) -> None:
    say(session, "alice", "question from alice", 0)
    say(session, "bob", "bob answers alice", 10)
    say(session, "carol", "carol answers bob", 20)
    assert len(pairs(session)) == 2
    forget_person(session, platform="telegram", external_id="bob", now=at(30))
    # Bob's words are gone, and Carol's answer to him is not glued to Alice's question either.
    assert pairs(session) == []


def test_filtered_text_drops_the_pair(session: Session) -> None:
    say(session, "alice", "what's your number?", 0)
    say(session, "bob", "010-9876-5432", 5)
    say(session, "carol", "/stats", 10)
    say(session, "dave", "https://example.com", 15)
    say(session, "erin", "ok", 20)
    assert pairs(session) == []


def test_blocklist_is_applied(session: Session) -> None:
    say(session, "alice", "you are a 바보", 0)
    say(session, "bob", "no you", 5)
    rules = MiningRules(text_filter=TextFilter(blocklist=frozenset({"바보"})), max_person_share=1.0)
    assert pairs(session, rules) == []


def test_exact_duplicates_are_kept_once(session: Session) -> None:
    for minute in range(3):
        say(session, "alice", "good morning", minute * 600)
        say(session, "bob", "morning!", minute * 600 + 5)
    assert pairs(session) == [("good morning", "morning!")]


def test_one_person_cannot_flood_the_snapshot(session: Session) -> None:
    for i in range(8):
        say(session, "alice", f"question {i}", i * 20)
        say(session, "spammer", f"spam answer {i}", i * 20 + 5)
    say(session, "bob", "bob asks", 1000)
    say(session, "carol", "carol answers", 1005)
    # 16 candidates (8 by the spammer, 7 by alice, 1 by carol); a 25% cap keeps 4 each at most.
    mined = pairs(session, MiningRules(max_person_share=0.25))
    spam = [reply for _, reply in mined if reply.startswith("spam")]
    assert spam == [f"spam answer {i}" for i in range(4, 8)]  # the most recent ones
    assert ("bob asks", "carol answers") in mined
    assert sum(reply.startswith("question") for _, reply in mined) == 4


def test_context_is_the_turn_before_the_prompt(session: Session) -> None:
    say(session, "alice", "I got a puppy", 0)
    say(session, "bob", "what breed?", 10)
    say(session, "alice", "a jindo", 20)
    mined = list(mine_pairs(session, OPEN))
    assert [(pair.context, pair.prompt, pair.reply) for pair in mined] == [
        ("", "I got a puppy", "what breed?"), ("I got a puppy", "what breed?", "a jindo")]
    no_context = list(mine_pairs(session, MiningRules(with_context=False, max_person_share=1.0)))
    assert all(pair.context == "" for pair in no_context)


def test_snapshot_size_and_hash_are_stable_and_change_with_the_data(session: Session) -> None:
    say(session, "alice", "how are you?", 0)
    say(session, "bob", "great, thanks 😊", 5)
    first = mine_pairs(session, OPEN)
    records: list[MinedPair] = list(first)
    again = mine_pairs(session, OPEN)
    list(again)
    assert first.size == len(records) == 1 and first.sha256 == again.sha256 and len(first.sha256) == 64
    say(session, "carol", "me too", 10)
    changed = mine_pairs(session, OPEN)
    list(changed)
    assert changed.size == 2 and changed.sha256 != first.sha256


def test_until_bounds_the_snapshot(session: Session) -> None:
    say(session, "alice", "early", 0)
    say(session, "bob", "early reply", 5)
    say(session, "carol", "late reply", 50)
    assert [(pair.prompt, pair.reply) for pair in mine_pairs(session, OPEN, until=at(10))] == [
        ("early", "early reply")]
