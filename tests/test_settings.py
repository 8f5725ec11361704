"""Settings: defaults, config file, environment, and clear messages for bad values."""

from pathlib import Path

import pytest

from config import SettingsError, load_settings
from config.settings import BUNDLED_ARTICLES


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEWSBOT_DATA_DIR", raising=False)
    settings = load_settings()
    assert settings.data_dir == Path("var")
    assert settings.articles_dir == BUNDLED_ARTICLES
    assert settings.answer_backend == "extractive" and settings.chroma_mode == "embedded"


def test_environment_beats_config_file_beats_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "newsbot.toml"
    config.write_text("top_k = 7\nchunk_size = 600\nadmin_ids = [1, 2]\n")
    monkeypatch.setenv("NEWSBOT_TOP_K", "12")
    monkeypatch.setenv("NEWSBOT_ALLOWED_CHAT_IDS", "-100123, 42")
    settings = load_settings(config)
    assert (settings.top_k, settings.chunk_size, settings.admin_ids) == (12, 600, [1, 2])
    assert settings.allowed_chat_ids == [-100123, 42]


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("NEWSBOT_TOP_K", "lots", "top_k (NEWSBOT_TOP_K)"),
        ("NEWSBOT_ANSWER_BACKEND", "magic", "'extractive' or 'llm'"),
        ("NEWSBOT_CHROMA_MODE", "cloud", "'embedded' or 'http'"),
        ("NEWSBOT_CHUNK_OVERLAP", "5000", "chunk_overlap (5000) must be smaller than chunk_size"),
        ("NEWSBOT_REFUSAL_THRESHOLD", "2", "refusal_threshold"),
    ],
)
def test_bad_values_name_the_setting(monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert expected in str(caught.value)


def test_unknown_keys_in_a_config_file_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "newsbot.toml"
    config.write_text("topk = 3\n")
    with pytest.raises(SettingsError, match="topk"):
        load_settings(config)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")


def test_a_reader_that_is_not_there_stops_at_start(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="reader"):
        load_settings(data_dir=str(tmp_path), reader=str(tmp_path / "no-such-reader"))
    assert load_settings(data_dir=str(tmp_path), reader="bundled").reader == "bundled"


def test_answer_workers_are_urls_and_exclude_answer_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSBOT_ANSWER_WORKERS", "http://worker-1:8500, http://worker-2:8500/")
    assert load_settings().answer_workers == ["http://worker-1:8500", "http://worker-2:8500"]
    assert load_settings(answer_workers="").answer_workers == []
    with pytest.raises(SettingsError, match="setting answer_workers .*newsbot worker"):
        load_settings(answer_workers="worker-1:8500")
    with pytest.raises(SettingsError, match="answer_workers and answer_processes both set"):
        load_settings(answer_processes=2)
