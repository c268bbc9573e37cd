from bot.recent_turns import RecentTurns

CHAT = ("telegram", "g1", None)


def test_the_last_turn_within_the_window_is_the_context() -> None:
    now = [0.0]
    turns = RecentTurns(300, clock=lambda: now[0])
    assert turns.context(CHAT) == ""
    turns.add(CHAT, "hi")
    turns.add(CHAT, "hello, how are you?")
    now[0] = 300
    assert turns.context(CHAT) == "hello, how are you?"
    now[0] = 300.5
    assert turns.context(CHAT) == ""  # too long ago to be part of this conversation


def test_each_chat_and_thread_is_a_conversation_of_its_own() -> None:
    turns = RecentTurns(300)
    turns.add(CHAT, "in the chat")
    turns.add(("telegram", "g1", "7"), "in a thread")
    turns.add(("discord", "g1", None), "on another platform")
    assert turns.context(CHAT) == "in the chat"
    assert turns.context(("telegram", "g1", "7")) == "in a thread"
    assert turns.context(("telegram", "g2", None)) == ""


def test_the_conversations_quiet_the_longest_are_forgotten_first() -> None:
    turns = RecentTurns(300, max_conversations=2)
    for chat in ("a", "b"):
        turns.add(("telegram", chat, None), chat)
    turns.add(("telegram", "a", None), "a again")  # a is now the most recent
    turns.add(("telegram", "c", None), "c")
    assert [turns.context(("telegram", chat, None)) for chat in "abc"] == ["a again", "", "c"]


def test_a_deleted_or_forgotten_turn_is_no_ones_context() -> None:
    turns = RecentTurns(300)
    turns.add(CHAT, "a secret", author_id="u1", message_id="m1")
    turns.add(("telegram", "g1", "7"), "mine too", author_id="u1", message_id="m2")
    turns.add(("telegram", "g2", None), "someone else's", author_id="u2", message_id="m1")
    turns.deleted("telegram", "g1", "m1")
    assert turns.context(CHAT) == "" and turns.context(("telegram", "g1", "7")) == "mine too"
    assert turns.context(("telegram", "g2", None)) == "someone else's"  # same id, another chat
    turns.forget_author("telegram", "u1")
    assert turns.context(("telegram", "g1", "7")) == ""
    assert turns.context(("telegram", "g2", None)) == "someone else's"
    turns.forget_author("discord", "u2")  # the same id on another platform is another person
    assert turns.context(("telegram", "g2", None)) == "someone else's"


def test_an_edited_turn_is_read_as_edited() -> None:
    turns = RecentTurns(300)
    turns.add(CHAT, "helo", author_id="u1", message_id="m1")
    turns.edited("telegram", "g1", "m2", "not this one")
    turns.edited("telegram", "g1", "m1", "hello")
    assert turns.context(CHAT) == "hello"


def test_a_reply_of_the_bots_is_deleted_by_the_id_the_platform_gave_it() -> None:
    turns = RecentTurns(300)
    turns.add(CHAT, "hi there!", reply_row=7)
    turns.sent(CHAT, 6, "m6")  # an older reply: not the last turn
    turns.deleted("telegram", "g1", "m6")
    assert turns.context(CHAT) == "hi there!"
    turns.sent(CHAT, 7, "m7")
    turns.deleted("telegram", "g1", "m7")
    assert turns.context(CHAT) == ""
