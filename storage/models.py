"""The conversation store's tables: people, chats, messages, model versions, training runs, leases."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Annotated, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Alembic can only rename or drop constraints that have names (SQLite batch mode rebuilds tables).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC without a zone (SQLite keeps none) and always hands back aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


# Row ids: 64-bit on servers; SQLite only auto-increments a column declared INTEGER.
RowId = BigInteger().with_variant(Integer(), "sqlite")
IdPk = Annotated[int, mapped_column(RowId, primary_key=True, autoincrement=True)]
Timestamp = Annotated[datetime, mapped_column(UTCDateTime())]
PlatformId = Annotated[str, mapped_column(String(64))]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON}


class ChatKind(enum.StrEnum):
    PRIVATE = "private"
    GROUP = "group"
    CHANNEL = "channel"


class VersionStatus(enum.StrEnum):
    CANDIDATE = "candidate"
    ACTIVE = "active"
    REJECTED = "rejected"
    RETIRED = "retired"


class RunTrigger(enum.StrEnum):
    SCHEDULE = "schedule"
    ADMIN = "admin"
    CLI = "cli"


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    REJECTED = "rejected"
    FAILED = "failed"


def _enum(kind: type[enum.StrEnum], name: str) -> Enum:
    # A plain VARCHAR rather than a native enum type: adding a value later needs no migration.
    return Enum(kind, name=name, native_enum=False, length=16,
                values_callable=lambda members: [member.value for member in members])


class Person(Base):
    __tablename__ = "people"
    __table_args__ = (UniqueConstraint("platform", "external_id", name="uq_people_platform_external_id"),)

    id: Mapped[IdPk]
    platform: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[PlatformId]
    display_name: Mapped[str | None] = mapped_column(String(255))
    opted_out: Mapped[bool] = mapped_column(default=False)
    forgotten_at: Mapped[Timestamp | None]
    created_at: Mapped[Timestamp] = mapped_column(default=utcnow)


class Chat(Base):
    __tablename__ = "chats"
    __table_args__ = (UniqueConstraint("platform", "external_id", name="uq_chats_platform_external_id"),)

    id: Mapped[IdPk]
    platform: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[PlatformId]
    kind: Mapped[ChatKind] = mapped_column(_enum(ChatKind, "chat_kind"))
    title: Mapped[str | None] = mapped_column(String(255))
    # Percent chance of answering a message nobody addressed to the bot.
    chattiness: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[Timestamp] = mapped_column(default=utcnow)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        # Lookups by platform ids (edits, deletions, reply links).
        UniqueConstraint("chat_id", "platform_message_id", name="uq_messages_chat_id_platform_message_id"),
        # Mining walks each chat (and thread) in time order.
        Index("ix_messages_chat_thread_time", "chat_id", "thread_id", "created_at", "id"),
    )

    id: Mapped[IdPk]
    chat_id: Mapped[int] = mapped_column(RowId, ForeignKey("chats.id", ondelete="CASCADE"))
    # None for the bot's own messages.
    author_id: Mapped[int | None] = mapped_column(
        RowId, ForeignKey("people.id", ondelete="CASCADE"), index=True)
    platform_message_id: Mapped[PlatformId | None]
    thread_id: Mapped[PlatformId | None]
    # None when the author had opted out: the row keeps reply links and counts, not their words.
    text: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[Timestamp] = mapped_column(index=True)
    edited_at: Mapped[Timestamp | None]
    deleted_at: Mapped[Timestamp | None]
    reply_to_platform_id: Mapped[PlatformId | None]
    reply_to_id: Mapped[int | None] = mapped_column(
        RowId, ForeignKey("messages.id", ondelete="SET NULL"), index=True)
    from_bot: Mapped[bool] = mapped_column(default=False)
    model_version_id: Mapped[int | None] = mapped_column(
        RowId, ForeignKey("model_versions.id", ondelete="SET NULL"))


class ModelVersion(Base):
    __tablename__ = "model_versions"

    id: Mapped[IdPk]
    name: Mapped[str] = mapped_column(String(64), unique=True)
    folder: Mapped[str] = mapped_column(String(1024))
    status: Mapped[VersionStatus] = mapped_column(_enum(VersionStatus, "version_status"), index=True)
    parent_id: Mapped[int | None] = mapped_column(
        RowId, ForeignKey("model_versions.id", ondelete="SET NULL"))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    data_pairs: Mapped[int] = mapped_column(default=0)
    data_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[Timestamp] = mapped_column(default=utcnow)


class TrainingRun(Base):
    __tablename__ = "training_runs"

    id: Mapped[IdPk]
    trigger: Mapped[RunTrigger] = mapped_column(_enum(RunTrigger, "run_trigger"))
    # "platform:external id" of the admin who asked, when a person did.
    requested_by: Mapped[str | None] = mapped_column(String(96))
    status: Mapped[RunStatus] = mapped_column(_enum(RunStatus, "run_status"), index=True)
    created_at: Mapped[Timestamp] = mapped_column(default=utcnow)
    started_at: Mapped[Timestamp | None]
    finished_at: Mapped[Timestamp | None]
    # Latest step, loss and ETA reported by the trainer, for "/retrain status".
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    version_id: Mapped[int | None] = mapped_column(
        RowId, ForeignKey("model_versions.id", ondelete="SET NULL"))


class Lease(Base):
    """A named lock with an expiry, shared by every process that uses the database."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    acquired_at: Mapped[Timestamp]
    expires_at: Mapped[Timestamp]
