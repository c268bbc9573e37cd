"""Settings from the environment and .env (every key is listed, with a comment, in .env.example)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from core_model.config import DecodeConfig


class SettingsError(ValueError):
    """A setting has a bad value; the message names the key."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    data_dir: Path = Path("var")
    model_dir: Path | None = None
    default_train_seconds: float = Field(150.0, gt=0)
    torch_threads: int | None = Field(None, ge=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"

    database_url: str | None = None
    # Pair mining: the adjacency window, text length bounds, blocked words and the per-person cap.
    pair_window_seconds: float = Field(300.0, gt=0)
    mining_min_chars: int = Field(2, ge=1)
    mining_max_chars: int = Field(300, ge=1)
    blocklist_file: Path | None = None
    max_person_share: float = Field(0.3, gt=0, le=1)
    # Messages older than this many days are deleted; 0 keeps everything.
    retention_days: float = Field(0.0, ge=0)

    decode_strategy: Literal["greedy", "beam", "sample"] = "beam"
    beam_width: int = Field(5, ge=1, le=32)
    length_penalty: float = Field(1.0, ge=0)
    no_repeat_ngram: int = Field(3, ge=0)
    max_reply_tokens: int = Field(40, ge=1, le=512)
    temperature: float = Field(0.8, gt=0)
    top_p: float = Field(0.9, gt=0, le=1)

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
