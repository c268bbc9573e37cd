import json
import math

import numpy as np
import pytest

from core_model import bm25, reply_memory
from core_model.corpora import Pair
from core_model.reply_memory import ReplyMemory

PROMPTS = ["오늘 날씨 어때?", "배고파", "배가 너무 고파요", "hello there", "what is your name?"]
REPLIES = ["맑아요.", "뭐 좀 드세요.", "밥 먹으러 가요.", "hi!", "i am a chatbot."]


@pytest.fixture()
def memory() -> ReplyMemory:
    return ReplyMemory(PROMPTS, REPLIES)


def test_a_prompt_it_was_trained_on_is_its_own_nearest(memory: ReplyMemory) -> None:
    for prompt, reply in zip(PROMPTS, REPLIES, strict=True):
        first = memory.nearest(prompt, 1)[0]
        assert (first.prompt, first.reply) == (prompt, reply)
        # the same prompt is similar as 1, less the prior of a reply no other pair has
        assert 0.9 < first.similarity < 1
        assert first.similarity == pytest.approx(1.0 - reply_memory.REPLY_PRIOR * math.log(2), abs=1e-5)


def test_a_reply_many_pairs_share_counts_against_its_pair() -> None:
    # The same prompt twice: one got a reply of its own, the other the stock answer of three more pairs.
    stock = "좋은 생각이에요."
    memory = ReplyMemory(["배고파", "배고파", "심심해", "피곤해", "졸려"], [stock, "뭐 좀 드세요.", stock, stock, stock])
    first, second = memory.nearest("배고파", 2)
    assert (first.reply, second.reply) == ("뭐 좀 드세요.", stock)
    gap = first.similarity - second.similarity
    assert gap > 0.05 and gap == pytest.approx(reply_memory.REPLY_PRIOR * math.log(5 / 2), abs=1e-5)


def test_a_reworded_prompt_finds_the_prompts_that_share_its_characters(memory: ReplyMemory) -> None:
    found = memory.nearest("배고픈데 뭐 먹지", 2)
    assert {n.prompt for n in found} == {"배고파", "배가 너무 고파요"}
    assert found[0].similarity >= found[1].similarity > 0
    assert memory.nearest("HELLO  There", 1)[0].reply == "hi!"  # case and spacing do not matter


def test_bm25_prefers_rare_n_grams_and_short_prompts() -> None:
    memory = ReplyMemory(["감기 걸렸어", "감기 걸렸어 그런데 오늘 정말 너무 피곤하고 졸려", "오늘 뭐 해", "오늘 어때", "오늘 좋아"],
                         ["감기 조심하세요.", "푹 쉬세요.", "놀아요.", "좋아요.", "다행이에요."])
    # "감기" is in two prompts and "오늘" in four: sharing the rarer word counts for more
    assert memory.nearest("오늘 감기", 1)[0].reply == "감기 조심하세요."
    # both hold every n-gram of the query; the one that says little else is nearer
    short, long = memory.nearest("감기 걸렸어", 2)
    assert (short.reply, long.reply) == ("감기 조심하세요.", "푹 쉬세요.") and short.similarity > long.similarity > 0
    partial = memory.nearest("감기 걸렸어 ㅠㅠ", 1)[0]  # n-grams no prompt holds make it less similar
    assert partial.reply == "감기 조심하세요." and partial.similarity < short.similarity


@pytest.mark.parametrize("prompt", ["", "   ", "ｘｙｚ", "\x00\x01"])
def test_a_prompt_sharing_nothing_has_no_neighbours(memory: ReplyMemory, prompt: str) -> None:
    assert memory.nearest(prompt, 3) == []


def test_it_never_returns_more_than_it_holds(memory: ReplyMemory) -> None:
    assert len(memory.nearest("what", 50)) <= len(PROMPTS)
    assert ReplyMemory([], []).nearest("hello", 3) == []


def test_it_keeps_the_last_pairs_that_fit_its_n_gram_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    last_two = sum(len(bm25.character_grams(prompt)) for prompt in PROMPTS[-2:])
    monkeypatch.setattr(reply_memory, "MAX_NGRAMS", last_two)
    memory = ReplyMemory(PROMPTS, REPLIES)
    assert memory.prompts == PROMPTS[-2:] and memory.replies == REPLIES[-2:]
    assert memory.nearest(PROMPTS[-1], 1)[0].reply == REPLIES[-1]


def test_indexed_with_an_encoder_its_neighbours_carry_their_replies_token_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    def encode(text: str) -> list[int]:
        return [len(text), *map(ord, text[:2])]

    assert all(n.reply_ids is None for n in ReplyMemory(PROMPTS, REPLIES).nearest("배고파", 3))
    # only the pairs that fit the n-gram budget are kept: the ids follow the replies kept
    monkeypatch.setattr(reply_memory, "MAX_NGRAMS", sum(len(bm25.character_grams(p)) for p in PROMPTS[1:]))
    given: list[list[str]] = []
    memory = ReplyMemory(PROMPTS, REPLIES).indexed(encode, lambda prompts: given.append(prompts) or np.eye(len(prompts)))
    assert memory.replies == REPLIES[1:] and given == [PROMPTS[1:]]  # so are the vectors
    for prompt in PROMPTS[1:]:
        for neighbour in memory.nearest(prompt, 3):
            assert neighbour.reply_ids == encode(neighbour.reply)


def test_json_round_trip(memory: ReplyMemory) -> None:
    again = ReplyMemory.from_json(memory.to_json())
    assert (again.prompts, again.replies) == (PROMPTS, REPLIES)
    assert again.nearest("배고파", 1) == memory.nearest("배고파", 1)


def test_with_learned_keeps_the_base_pairs_and_takes_the_new_ones_after_them() -> None:
    built = ReplyMemory.of([Pair(p, r) for p, r in zip(PROMPTS[:3], REPLIES[:3], strict=True)])
    first = built.with_learned([Pair("secret?", "swordfish"), Pair(PROMPTS[0], REPLIES[0])])  # one is a base pair
    assert first.prompts == [*PROMPTS[:3], "secret?"]
    # a later retrain learns from the chats as they are then: the earlier lesson is not carried over
    second = ReplyMemory.from_json(first.to_json()).with_learned([Pair("bye", "see you")])
    assert (second.prompts, second.replies) == ([*PROMPTS[:3], "bye"], [*REPLIES[:3], "see you"])


def test_without_drops_the_learned_pairs_holding_a_text_but_never_the_base() -> None:
    memory = ReplyMemory([*PROMPTS[:2], "secret?", "who knows", "bye"], [*REPLIES[:2], "swordfish", "me  too", "see you"],
                         base=2)
    kept = memory.without(["swordfish", "me too", PROMPTS[0]])  # whitespace runs count as one space
    assert (kept.prompts, kept.replies) == ([*PROMPTS[:2], "bye"], [*REPLIES[:2], "see you"])
    assert kept.with_learned([]).prompts == PROMPTS[:2] and len(kept) == 3


def test_the_base_survives_json_and_the_budget_drops_its_oldest_pairs_first(monkeypatch: pytest.MonkeyPatch) -> None:
    memory = ReplyMemory(PROMPTS, REPLIES, base=3)
    assert json.loads(memory.to_json())["base"] == 3
    assert ReplyMemory.from_json(memory.to_json()).with_learned([]).prompts == PROMPTS[:3]
    # a memory written before it had a base: all of its pairs are
    old = json.dumps({"prompts": PROMPTS, "replies": REPLIES})
    assert ReplyMemory.from_json(old).with_learned([]).prompts == PROMPTS
    monkeypatch.setattr(reply_memory, "MAX_NGRAMS", sum(len(bm25.character_grams(p)) for p in PROMPTS[1:]))
    trimmed = ReplyMemory.from_json(ReplyMemory(PROMPTS, REPLIES, base=3).to_json())
    assert trimmed.prompts == PROMPTS[1:] and trimmed.with_learned([]).prompts == PROMPTS[1:3]


@pytest.mark.parametrize("text", ["not json", "[]", json.dumps({"prompts": ["a"]}),
                                  json.dumps({"prompts": [1], "replies": ["a"]}),
                                  json.dumps({"prompts": ["a", "b"], "replies": ["a"]}),
                                  json.dumps({"prompts": ["a"], "replies": ["b"], "base": 2}),
                                  json.dumps({"prompts": ["a"], "replies": ["b"], "base": "1"})])
def test_a_malformed_memory_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        ReplyMemory.from_json(text)


def _unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_given_vectors_the_prompts_nearest_in_characters_are_ranked_by_a_blend_with_their_cosine(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reply_memory, "REPLY_PRIOR", 0.0)  # the blend alone
    vectors = {"배고파": _unit(1, 0, 0), "배가 너무 고파요": _unit(0, 1, 0)}
    seen: list[list[str]] = []

    def vectors_of(prompts: list[str]) -> np.ndarray:
        seen.append(prompts)
        return np.stack([vectors.get(prompt, _unit(0, 0, 1)) for prompt in prompts])

    plain = ReplyMemory(PROMPTS, REPLIES)
    memory = ReplyMemory(PROMPTS, REPLIES).indexed(vectors=vectors_of)
    assert seen == [PROMPTS] and memory.has_vectors and not plain.has_vectors
    by_characters = {n.prompt: n.similarity for n in plain.nearest("배고파요", 5)}
    assert next(iter(by_characters)) == "배가 너무 고파요"
    # a vector that says the query means what "배고파" means puts that prompt first
    found = memory.nearest("배고파요", 5, vector=_unit(1, 0, 0))
    assert found[0].prompt == "배고파"
    share = reply_memory.VECTOR_SHARE
    for neighbour in found:
        cosine = float(vectors.get(neighbour.prompt, _unit(0, 0, 1)) @ _unit(1, 0, 0))
        expected = max((1 - share) * by_characters[neighbour.prompt] + share * cosine, 0.0)
        assert neighbour.similarity == pytest.approx(expected, abs=1e-3)
    assert [n.similarity for n in found] == sorted((n.similarity for n in found), reverse=True)
    # the vectors rank only prompts that share characters with the query, and only when given one
    assert {n.prompt for n in found} == set(by_characters)
    assert memory.nearest("ｘｙｚ", 3, vector=_unit(1, 0, 0)) == []
    assert memory.nearest("배고파요", 5) == plain.nearest("배고파요", 5)


def test_prompts_looked_up_together_get_the_neighbours_each_gets_alone() -> None:
    prompts = [*PROMPTS, "배고파", "hello there", "오늘 날씨 좋다", "what's your name", "배가 고파"]
    rng = np.random.default_rng(0)
    table = {prompt: _unit(*rng.normal(size=4)) for prompt in prompts}
    memory = ReplyMemory(prompts, [f"reply {i}" for i in range(len(prompts))]).indexed(
        vectors=lambda kept: np.stack([table[prompt] for prompt in kept]))
    queries = ["배고파요", "hello", "", "오늘 날씨", "ｘｙｚ", "name?", "배고파"] * 6
    vectors = [_unit(*rng.normal(size=4)) if i % 3 else None for i in range(len(queries))]
    together = memory.nearest_each(queries, 3, vectors)
    assert together == [memory.nearest(query, 3, vector) for query, vector in zip(queries, vectors, strict=True)]
    assert any(len(found) == 3 for found in together) and together[2] == [] and together[4] == []
