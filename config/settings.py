"""The one typed settings object, built once at start and passed down."""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

# Bundled files are package data, found through importlib.resources: this works in a plain
# `pip install .` as well as in an editable install (both install them as ordinary files).
DEFAULTS_FILE = Path(str(resources.files("config") / "defaults.toml"))
BUNDLED_ARTICLES = Path(str(resources.files("retrieval.ingest") / "samples"))

# Set by load_settings() for the duration of one construction: the user's --config file.
_CONFIG_FILE: Path | None = None


class SettingsError(ValueError):
    """A setting has a value the program cannot use; the message names it."""


class Settings(BaseSettings):
    """Every knob of newsbot. Environment variables are NEWSBOT_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="NEWSBOT_", extra="forbid", validate_default=True)

    data_dir: Path
    articles_dir: Path | None = None
    collection: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{1,40}[A-Za-z0-9]$")
    chroma_mode: Literal["embedded", "http"]
    chroma_host: str
    chroma_port: int = Field(ge=1, le=65535)
    embedding_model: str
    embedding_runtime: Literal["onnx", "torch"]
    embedding_max_tokens: int = Field(ge=0, le=512)
    model_cache: str
    embedding_batch_size: int = Field(ge=1, le=4096)
    embedding_threads: int = Field(ge=0, le=256)
    chunk_size: int = Field(ge=100, le=8000)
    chunk_overlap: int = Field(ge=0)
    max_file_bytes: int = Field(ge=1000)
    top_k: int = Field(ge=1, le=100)
    answer_sentences: int = Field(ge=1, le=10)
    refusal_threshold: float = Field(ge=0.0, le=1.0)
    reader: str
    reader_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    reader_threads: int = Field(ge=0, le=256)
    entities: bool
    short_answer: bool
    answer_backend: Literal["extractive", "llm"]
    llm_model: str
    llm_base_url: str
    llm_temperature: float = Field(ge=0.0, le=2.0)
    llm_passages: int = Field(ge=1, le=20)
    llm_max_tokens: int = Field(ge=16, le=8192)
    llm_timeout_seconds: float = Field(gt=0.0, le=600.0)
    llm_token_timeout_seconds: float = Field(gt=0.0, le=600.0)
    llm_retries: int = Field(ge=0, le=5)
    llm_fallback: Literal["extractive", "refuse"]
    # Comma-separated in the environment: NEWSBOT_ADMIN_IDS=123,456
    admin_ids: Annotated[list[int], NoDecode]
    allowed_chat_ids: Annotated[list[int], NoDecode]
    rate_limit_per_minute: int = Field(ge=0)
    max_question_chars: int = Field(ge=10)
    max_upload_bytes: int = Field(ge=1)
    max_concurrent_answers: int = Field(ge=0)
    answer_processes: int = Field(ge=0, le=64)
    # Comma-separated in the environment: NEWSBOT_ANSWER_WORKERS=http://worker-1:8500,http://worker-2:8500
    answer_workers: Annotated[list[str], NoDecode]
    answer_worker_timeout_seconds: float = Field(gt=0.0, le=3600.0)
    context_turns: int = Field(ge=0, le=20)
    context_ttl_seconds: int = Field(ge=0)
    feed_poll_minutes: float = Field(ge=0)
    feed_retention_days: int = Field(ge=0)
    fetch_user_agent: str = Field(min_length=1)
    fetch_timeout_seconds: float = Field(gt=0, le=300)
    fetch_max_bytes: int = Field(ge=1000)
    fetch_max_redirects: int = Field(ge=0, le=20)
    fetch_host_pause_seconds: float = Field(ge=0, le=60)
    # Comma-separated in the environment: NEWSBOT_FETCH_ALLOWED_HOSTS=intranet.example,127.0.0.1
    fetch_allowed_hosts: Annotated[list[str], NoDecode]
    fetch_concurrency: int = Field(ge=1, le=64)
    fetch_per_host: int = Field(ge=1, le=16)
    fetch_proxy: str = Field(pattern=r"^(|https?://\S+)$")
    timezone: str
    digest_when_empty: Literal["say", "silent"]
    max_digests_per_chat: int = Field(ge=1, le=100)
    database_url: str
    job_check_seconds: float = Field(gt=0, le=3600)
    job_lease_seconds: float = Field(gt=0, le=86400)

    @field_validator("articles_dir", mode="before")
    @classmethod
    def _empty_is_bundled(cls, value: Any) -> Any:
        return BUNDLED_ARTICLES if value in (None, "") else value

    @field_validator("reader")
    @classmethod
    def _known_reader(cls, value: str) -> str:
        if value not in ("off", "bundled") and not Path(value, "reader.json").is_file():
            raise ValueError(f'expected "off", "bundled" or a trained reader\'s folder (with reader.json), got {value!r}')
        return value

    @field_validator("fetch_allowed_hosts", mode="before")
    @classmethod
    def _comma_separated_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        return [str(host).strip().lower() for host in value if str(host).strip()] if isinstance(value, list) else value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://", "postgres://")):
            raise ValueError(
                'expected "" (an SQLite file in data_dir), sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE'
            )
        return value

    @field_validator("answer_workers", mode="before")
    @classmethod
    def _comma_separated_urls(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if not isinstance(value, list):
            return value
        urls = [str(url).strip().rstrip("/") for url in value if str(url).strip()]
        for url in urls:
            if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", url):
                raise ValueError(f"expected the URLs of `newsbot worker` services, e.g. http://worker-1:8500, got {url!r}")
        return urls

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"expected an IANA time zone such as UTC or Europe/Berlin, got {value!r}") from exc
        return value

    @field_validator("reader_threshold", mode="before")
    @classmethod
    def _empty_is_calibrated(cls, value: Any) -> Any:
        return None if value in (None, "") else value

    @field_validator("admin_ids", "allowed_chat_ids", mode="before")
    @classmethod
    def _comma_separated_ids(cls, value: Any) -> Any:
        if isinstance(value, int):
            return [value]
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size ({self.chunk_size})")
        if self.answer_workers and self.answer_processes:
            raise ValueError(
                "answer_workers and answer_processes both set: questions are answered by the worker services"
                " (answer_workers) or in local processes (answer_processes), not both; set answer_processes = 0"
            )
        if self.answer_backend == "llm" and not self.llm_model:
            raise ValueError('answer_backend "llm" needs llm_model, e.g. NEWSBOT_LLM_MODEL=openai:gpt-4o-mini')
        return self

    @property
    def chroma_path(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def state_path(self) -> Path:
        """The SQLite file of feeds, fetched entries, digests and jobs (unless database_url names another database)."""
        return self.data_dir / "newsbot.sqlite3"

    @property
    def database(self) -> str | Path:
        """The shared store of feeds, articles, digests and the jobs' schedule: `database_url`, else the SQLite file."""
        return self.database_url or self.state_path

    @property
    def fetched_dir(self) -> Path:
        """Where the articles of feeds and links are kept, one JSON record each."""
        return self.data_dir / "fetched"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if _CONFIG_FILE is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=_CONFIG_FILE))
        sources.append(TomlConfigSettingsSource(settings_cls, toml_file=DEFAULTS_FILE))
        return tuple(sources)


def _describe(error: dict[str, Any]) -> str:
    name = ".".join(str(part) for part in error["loc"]) or "settings"
    env = f" (NEWSBOT_{name.upper()})" if error["loc"] else ""
    value = error.get("input")
    shown = f"; got {value!r}" if error["loc"] and not isinstance(value, dict) else ""
    return f"setting {name}{env}: {error['msg']}{shown}"


def load_settings(config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Build the settings; raise SettingsError naming each bad setting and what it accepts."""
    global _CONFIG_FILE
    if config_file is not None and not Path(config_file).is_file():
        raise SettingsError(f"config file not found: {config_file}")
    _CONFIG_FILE = Path(config_file) if config_file is not None else None
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise SettingsError("\n".join(_describe(dict(e)) for e in exc.errors())) from exc
    finally:
        _CONFIG_FILE = None
