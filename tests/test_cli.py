"""The `newsbot` command end to end: real model, real Chroma in a temporary directory."""

import json
import shutil
from pathlib import Path

import pytest

from newsbot.cli import main
from tests.conftest import ARTICLES


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "var"
    assert main(["--data-dir", str(path), "ingest", str(ARTICLES)]) == 0
    return path


@pytest.mark.model
def test_ingest_reports_counts_and_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    articles = tmp_path / "articles"
    shutil.copytree(ARTICLES, articles)
    (articles / "empty.md").write_text("")
    status = main(["--data-dir", str(tmp_path / "var"), "ingest", "--json", str(articles)])
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert status == 1  # one file skipped, the rest ingested
    assert (report["added"], report["updated"], report["unchanged"]) == (5, 0, 0)
    assert len(report["skipped"]) == 1 and "empty.md" in err

    status = main(["--data-dir", str(tmp_path / "var"), "ingest", str(articles / "000_1321fad9cd3c5a36.txt")])
    assert status == 0
    assert "0 added, 0 updated, 1 unchanged, 0 skipped" in capsys.readouterr().out


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["ingest", "--no-such-flag"])
    assert caught.value.code == 2
    assert main(["--data-dir", str(tmp_path), "ask"]) == 2
    assert main(["--config", str(tmp_path / "missing.toml"), "stats"]) == 2
    assert "config file not found" in capsys.readouterr().err


@pytest.mark.model
def test_ask_json_has_the_documented_fields(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    question = "How much can coalition-supported sorties cost per day?"
    assert main(["--data-dir", str(data_dir), "ask", "--json", question]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) >= {"question", "answer", "refused", "evidence", "citations", "passages", "timings_ms"}
    assert result["question"] == question and result["refused"] is False and "$250,000" in result["answer"]
    citation = result["citations"][0]
    assert set(citation) >= {"n", "doc_id", "title", "source", "url", "published", "path", "quote"}
    assert citation["path"].endswith("004_7d39ffd2d1ae62c8.txt") and "$250,000" in citation["quote"]
    assert len(result["passages"]) >= 10
    assert set(result["passages"][0]) >= {"rank", "doc_id", "chunk_id", "title", "text", "score"}
    assert set(result["timings_ms"]) == {"retrieve", "generate", "total"}


@pytest.mark.model
def test_ask_prints_answer_and_sources(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(data_dir), "ask", "Which air base near Mosul did Iraqi forces recapture?"]) == 0
    out = capsys.readouterr().out
    assert "Sources:" in out and "[1]" in out and ("Qayyarah" in out or "Qayara" in out)


@pytest.mark.model
def test_batch_answers_each_line(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    batch = tmp_path / "questions.jsonl"
    batch.write_text(
        '{"id": "a", "question": "How far is Mosul from Baghdad?"}\n'
        '{"id": "b", "question": "Who won the 2018 FIFA World Cup?", "as_of": "2016-08-01"}\n'
    )
    assert main(["--data-dir", str(data_dir), "ask", "--batch", str(batch)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["id"] for line in lines] == ["a", "b"]
    assert "360 kilometres" in lines[0]["answer"] and lines[1]["refused"] and lines[1]["citations"] == []


@pytest.mark.model
def test_sources_and_stats(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(data_dir), "sources"]) == 0
    out = capsys.readouterr().out
    assert "US will send 560 more soldiers to Iraq" in out and "5 articles" in out
    assert main(["--data-dir", str(data_dir), "stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["articles"] == 5 and stats["chunks"] >= 20
    assert stats["first_published"] == stats["last_published"] == "2016-07-11"


def test_train_reader_options_choose_the_training_config() -> None:
    from newsbot.cli import build_parser, training_config
    from retrieval.evaluation.training import TrainingConfig

    base = ["train-reader", "--data", "weeks", "--out", "model"]
    assert training_config(build_parser().parse_args(base)) == TrainingConfig()
    asked = build_parser().parse_args([*base, "--layers", "6", "--max-tokens", "96", "--epochs", "0.75", "--limit", "5"])
    assert training_config(asked) == TrainingConfig(layers=6, max_tokens=96, epochs=0.75, limit=5)
