"""Mining (prompt, reply) training pairs from logged group conversations, streamed.

Rules, in order:
1. A message that explicitly replies to another is paired with it (prompt = the replied-to text),
   provided the replied-to message is usable; it is then never paired by adjacency.
2. Otherwise adjacency: the message before it in the same chat and thread, by a different
   speaker, within `window`.
3. The bot's messages are never replies (the bot must not learn from itself); one may be the
   prompt when a person explicitly replies to it.
4. Nothing from opted-out or forgotten people or deleted messages; a pair whose prompt or reply
   fails the text filter (length, command, bare link, blocked word, personal data) is dropped.
5. Exact duplicate (prompt, reply) pairs are kept once; no person's replies make up more than
   `max_person_share` of the candidate pairs (their most recent ones are kept).
The previous turn before an adjacency prompt, when usable and within the window, is the context.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any, cast

from sqlalchemy import DateTime, Row, Table, and_, or_, select, type_coerce
from sqlalchemy.orm import Session

from storage.filters import TextFilter
from storage.models import Message, Person

BATCH_ROWS = 5_000


@dataclass(frozen=True, slots=True)
class MinedPair:
    context: str
    prompt: str
    reply: str
    prompt_id: int
    reply_id: int
    reply_author_id: int


@dataclass(frozen=True)
class MiningRules:
    window: timedelta = timedelta(minutes=5)
    text_filter: TextFilter = field(default_factory=TextFilter)
    max_person_share: float = 0.3
    with_context: bool = True


@dataclass(slots=True)
class _Turn:
    """One logged message as the miner sees it."""

    id: int
    author_id: int | None
    from_bot: bool
    created_at: datetime
    text: str | None  # None when unusable: deleted, opted out, forgotten or filtered out
    chat_thread: tuple[int, str | None]


class MinedPairs:
    """The pairs of one snapshot, iterable once; `size` and `sha256` are set after iteration."""

    def __init__(self, session: Session, rules: MiningRules, until: datetime | None) -> None:
        self._session = session
        self._rules = rules
        self._until = until
        self.size = 0
        self.sha256 = ""

    def __iter__(self) -> Iterator[MinedPair]:
        digest = hashlib.sha256()
        with tempfile.TemporaryFile() as spill:
            per_person = _spill_candidates(self._session, self._rules, self._until, spill)
            cap = math.ceil(self._rules.max_person_share * sum(per_person.values()))
            # Skip each person's oldest pairs beyond the cap, so the most recent ones stay.
            to_skip = Counter({person: count - cap for person, count in per_person.items() if count > cap})
            spill.seek(0)
            for pair in _read_spill(spill):
                if to_skip[pair.reply_author_id] > 0:
                    to_skip[pair.reply_author_id] -= 1
                    continue
                digest.update(f"{pair.context}\t{pair.prompt}\t{pair.reply}\n".encode())
                self.size += 1
                yield pair
        self.sha256 = digest.hexdigest()


def mine_pairs(session: Session, rules: MiningRules | None = None,
               until: datetime | None = None) -> MinedPairs:
    """Pairs from every message logged before `until` (all when None), in chat and time order."""
    return MinedPairs(session, rules or MiningRules(), until)


def _spill_candidates(session: Session, rules: MiningRules, until: datetime | None,
                      spill: IO[bytes]) -> Counter[int]:
    """Write every candidate pair to `spill`; return how many each reply author has."""
    per_person: Counter[int] = Counter()
    seen: set[int] = set()
    before: _Turn | None = None  # the turn before `previous`, for context
    previous: _Turn | None = None
    for row in _rows(session, until):
        turn = _turn(row, rules.text_filter)
        if previous is not None and previous.chat_thread != turn.chat_thread:
            before = previous = None
        pair = _pair(row, turn, previous, before, rules)
        if pair is not None:
            key = hash((pair.prompt, pair.reply))
            if key not in seen:
                seen.add(key)
                per_person[pair.reply_author_id] += 1
                # Plain tuples: a slotted dataclass pickles several times slower.
                pickle.dump(_as_tuple(pair), spill, protocol=pickle.HIGHEST_PROTOCOL)
        before, previous = previous, turn
    return per_person


def _as_tuple(pair: MinedPair) -> tuple[str, str, str, int, int, int]:
    return (pair.context, pair.prompt, pair.reply, pair.prompt_id, pair.reply_id, pair.reply_author_id)


def _pair(row: Row[Any], turn: _Turn, previous: _Turn | None, before: _Turn | None,
          rules: MiningRules) -> MinedPair | None:
    if turn.text is None or turn.from_bot or turn.author_id is None:
        return None
    if row.reply_to_id is not None or row.reply_to_platform_id is not None:
        # An explicit reply: to the replied-to message or to nothing usable, never by adjacency.
        if row.reply_to_id is None or row.parent_author_id == turn.author_id:
            return None
        prompt = _usable_text(row.parent_text, bool(row.parent_deleted), row.parent_from_bot,
                              row.parent_author_excluded, rules.text_filter)
        if prompt is None:
            return None
        return MinedPair("", prompt, turn.text, row.reply_to_id, turn.id, turn.author_id)
    if (previous is None or previous.text is None or previous.from_bot
            or previous.author_id == turn.author_id
            or turn.created_at - previous.created_at > rules.window):
        return None
    context = ""
    if (rules.with_context and before is not None and before.text is not None
            and previous.created_at - before.created_at <= rules.window):
        context = before.text
    return MinedPair(context, previous.text, turn.text, previous.id, turn.id, turn.author_id)


def _turn(row: Row[Any], text_filter: TextFilter) -> _Turn:
    text = _usable_text(row.text, row.deleted, row.from_bot, row.author_excluded, text_filter)
    return _Turn(row.id, row.author_id, row.from_bot, row.created_at, text, (row.chat_id, row.thread_id))


def _usable_text(text: str | None, deleted: bool, from_bot: bool | None,
                 author_excluded: bool | None, text_filter: TextFilter) -> str | None:
    if text is None or deleted or (author_excluded and not from_bot):
        return None
    return text if text_filter.accepts(text) else None


def _rows(session: Session, until: datetime | None) -> Iterator[Row[Any]]:
    messages = cast(Table, Message.__table__)
    people = cast(Table, Person.__table__)
    author, parent, parent_author = people.alias("author"), messages.alias("parent"), people.alias("parent_author")
    statement = (
        select(
            messages.c.id, messages.c.chat_id, messages.c.thread_id, messages.c.author_id,
            messages.c.from_bot,
            # Raw timestamps: only their differences matter here, and skipping the UTC wrapping
            # of a million values is measurable.
            type_coerce(messages.c.created_at, DateTime).label("created_at"),
            messages.c.deleted_at.is_not(None).label("deleted"), messages.c.text,
            messages.c.reply_to_id, messages.c.reply_to_platform_id,
            _excluded(author).label("author_excluded"),
            parent.c.text.label("parent_text"), parent.c.deleted_at.is_not(None).label("parent_deleted"),
            parent.c.from_bot.label("parent_from_bot"), parent.c.author_id.label("parent_author_id"),
            _excluded(parent_author).label("parent_author_excluded"),
        )
        .select_from(messages)
        .outerjoin(author, author.c.id == messages.c.author_id)
        .outerjoin(parent, parent.c.id == messages.c.reply_to_id)
        .outerjoin(parent_author, parent_author.c.id == parent.c.author_id)
        .order_by(messages.c.chat_id, messages.c.thread_id, messages.c.created_at, messages.c.id)
    )
    if until is not None:
        statement = statement.where(messages.c.created_at < until)
    # Streamed in chunks (a server-side cursor on PostgreSQL): memory stays flat however large.
    result = session.connection().execute(statement.execution_options(yield_per=BATCH_ROWS))
    yield from result


def _excluded(person: Any) -> Any:
    return or_(and_(person.c.opted_out.is_not(None), person.c.opted_out),
               person.c.forgotten_at.is_not(None))


def _read_spill(spill: IO[bytes]) -> Iterator[MinedPair]:
    while True:
        try:
            yield MinedPair(*pickle.load(spill))
        except EOFError:
            return
