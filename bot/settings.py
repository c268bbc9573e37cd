"""Settings from the environment and .env (every key is listed, with a comment, in .env.example)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core_model.config import DecodeConfig, Rerank, Strategy

_DECODING = DecodeConfig()


class SettingsError(ValueError):
    """A setting has a bad value; the message names the key."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    data_dir: Path = Path("var")
    model_dir: Path | None = None
    # How long the first run trains the default model (why 240 s: bot/default_model.py).
    default_train_seconds: float = Field(240.0, gt=0)
    torch_threads: int | None = Field(None, ge=1)
    # Batches the bot's decoding process decodes at once, one thread each.
    decode_workers: int = Field(2, ge=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"

    # Platforms: an adapter starts when its token is set; the terminal chat when none is.
    telegram_token: str | None = None
    # Another Bot API server (e.g. a local telegram-bot-api); empty for Telegram's own.
    telegram_api_url: str | None = None
    # Telegram's flood limits: messages per second overall and per minute in one group, and how
    # many times a rate-limited send is retried.
    telegram_rate_per_second: float = Field(30.0, gt=0)
    telegram_group_rate_per_minute: float = Field(20.0, gt=0)
    telegram_max_retries: int = Field(3, ge=0)
    discord_token: str | None = None
    discord_guild_id: int | None = None
    # Global admins: comma-separated platform user ids, allowed admin commands everywhere.
    telegram_admin_ids: str = ""
    discord_admin_ids: str = ""
    # Unaddressed answers in one chat are at least this many seconds apart.
    chat_cooldown_seconds: float = Field(30.0, ge=0)

    # /healthz and /metrics (Prometheus) on 127.0.0.1 while the bot serves a platform; 0 turns it off.
    ops_port: int = Field(9108, ge=0, le=65535)

    # Retraining: a crontab line (minute hour day month weekday, server time; empty: no schedule),
    # the new mined pairs needed to bother, the bits/char a candidate may lose and still go live,
    # the training budget in seconds, its threads (leave a core to serving) and the share of base
    # corpus pairs mixed in per mined pair, so that the bot does not forget what it knew.
    retrain_cron: str = "0 4 * * *"
    retrain_min_new_pairs: int = Field(200, ge=0)
    retrain_tolerance_bits: float = Field(0.02, ge=0)
    retrain_seconds: float = Field(120.0, gt=0)
    retrain_threads: int = Field(1, ge=1)
    retrain_replay_ratio: float = Field(1.0, ge=0)
    # Rejected and retired model versions kept on disk (the active one and its parent always are).
    keep_model_versions: int = Field(10, ge=0)

    database_url: str | None = None
    # Pair mining: the adjacency window, text length bounds, blocked words and the per-person cap.
    pair_window_seconds: float = Field(300.0, gt=0)
    mining_min_chars: int = Field(2, ge=1)
    mining_max_chars: int = Field(300, ge=1)
    blocklist_file: Path | None = None
    max_person_share: float = Field(0.3, gt=0, le=1)
    # Messages older than this many days are deleted; 0 keeps everything.
    retention_days: float = Field(0.0, ge=0)

    # Decoding: the engine's own defaults, except that sampling, when chosen, is a little tamer.
    decode_strategy: Strategy = _DECODING.strategy
    beam_width: int = Field(_DECODING.beam_width, ge=1, le=32)
    length_penalty: float = Field(_DECODING.length_penalty, ge=0)
    rerank: Rerank = _DECODING.rerank
    neighbour_share: float = Field(_DECODING.neighbour_share, ge=0, lt=1)
    no_repeat_ngram: int = Field(_DECODING.no_repeat_ngram, ge=0)
    max_reply_tokens: int = Field(_DECODING.max_length, ge=1, le=512)
    temperature: float = Field(0.8, gt=0)
    top_p: float = Field(0.9, gt=0, le=1)

    @field_validator("retrain_cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if value.strip():
            from apscheduler.triggers.cron import CronTrigger

            CronTrigger.from_crontab(value.strip())  # raises ValueError naming the bad field
        return value.strip()

    def admin_ids(self, platform: str) -> frozenset[str]:
        raw = {"telegram": self.telegram_admin_ids, "discord": self.discord_admin_ids}.get(platform, "")
        return frozenset(part.strip() for part in raw.split(",") if part.strip())

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'chatbot.db'}"

    @property
    def active_model_dir(self) -> Path:
        return self.model_dir or self.data_dir / "models" / "default"

    def decode_config(self) -> DecodeConfig:
        return DecodeConfig(
            strategy=self.decode_strategy,
            beam_width=self.beam_width,
            length_penalty=self.length_penalty,
            rerank=self.rerank,
            neighbour_share=self.neighbour_share,
            no_repeat_ngram=self.no_repeat_ngram,
            max_length=self.max_reply_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
        )


def load_settings() -> Settings:
    """Read the settings, turning a validation failure into one line that names the bad key."""
    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"]).upper()
        raise SettingsError(f"setting {key}: {first['msg']} (got {first.get('input')!r})") from None
