"""The `newsbot` command: ingest, ask, sources, stats, eval, serve, worker."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config import Settings, SettingsError, load_settings

if TYPE_CHECKING:  # training's module, like every command's, is imported only when its command runs
    from retrieval.evaluation.training import TrainingConfig

logger = logging.getLogger("newsbot")

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {value!r}") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="newsbot", description=__doc__)
    parser.add_argument("--config", metavar="FILE", help="TOML file of settings (see config/defaults.toml)")
    parser.add_argument("--data-dir", metavar="DIR", help="where the index lives (NEWSBOT_DATA_DIR, default ./var)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ingest = commands.add_parser("ingest", help="add or update articles in the index")
    ingest.add_argument(
        "paths", nargs="*", type=Path, metavar="PATH", help="files or directories (default: the articles directory)"
    )
    ingest.add_argument("--prune", action="store_true", help="remove indexed articles whose files are gone")
    ingest.add_argument("--json", action="store_true", help="print the report as JSON")

    ask = commands.add_parser("ask", help="answer a question from the indexed articles")
    ask.add_argument("question", nargs="?", help="the question")
    ask.add_argument(
        "--batch", metavar="FILE", type=Path, help='JSON Lines of {"id", "question"[, "as_of"]}; one JSON result a line on stdout'
    )
    ask.add_argument("--json", action="store_true", help="print the answer as one JSON object")
    ask.add_argument("--as-of", type=_date, metavar="DATE", help="answer as of this date (YYYY-MM-DD)")
    ask.add_argument("--since", type=_date, metavar="DATE", help="only articles published on or after DATE")
    ask.add_argument("--until", type=_date, metavar="DATE", help="only articles published on or before DATE")
    ask.add_argument("--top-k", type=int, metavar="N", help="passages to retrieve")

    sources = commands.add_parser("sources", help="list the indexed articles")
    sources.add_argument("--json", action="store_true")
    stats = commands.add_parser("stats", help="counts and sizes of the index")
    stats.add_argument("--json", action="store_true")

    feeds = commands.add_parser("feeds", help="the RSS and Atom feeds newsbot polls: list, add URL, remove N")
    feed_actions = feeds.add_subparsers(dest="action", metavar="ACTION")
    feed_list = feed_actions.add_parser("list", help="each feed with its last poll, new articles and last error (the default)")
    feed_list.add_argument("--json", action="store_true", help="print the feeds as JSON")
    feed_add = feed_actions.add_parser("add", help="subscribe to a feed (polled by the next refresh)")
    feed_add.add_argument("url", metavar="URL")
    feed_remove = feed_actions.add_parser("remove", help="unsubscribe (its articles stay)")
    feed_remove.add_argument("number", type=int, metavar="N")
    feeds.add_argument("--json", action="store_true", help="print the feeds as JSON")
    refresh = commands.add_parser("refresh", help="poll every feed now and ingest what is new")
    refresh.add_argument("--json", action="store_true", help="print the report as JSON")
    add = commands.add_parser("add", help="fetch the article at a link and ingest it")
    add.add_argument("url", metavar="URL")

    serve = commands.add_parser("serve", help="run the Telegram bot")
    serve.add_argument("--webhook", metavar="URL", help="run a webhook server for this public URL instead of polling")
    serve.add_argument("--listen", default="0.0.0.0:8443", metavar="HOST:PORT", help="webhook listen address")
    serve.add_argument(
        "--secret-token",
        default=os.environ.get("TELEGRAM_WEBHOOK_SECRET"),
        metavar="TOKEN",
        help="webhook secret token (or TELEGRAM_WEBHOOK_SECRET, or the file TELEGRAM_WEBHOOK_SECRET_FILE names)",
    )

    worker = commands.add_parser(
        "worker", help="answer questions and briefings for `newsbot serve` over HTTP (setting answer_workers)"
    )
    worker.add_argument("--listen", default="0.0.0.0:8500", metavar="HOST:PORT", help="where to listen (default: %(default)s)")
    worker.add_argument("--threads", type=int, default=2, metavar="N", help="questions answered at once (default: %(default)s)")

    evaluate = commands.add_parser("eval", help="measure retrieval and answers on a QA set")
    from newsbot.evaluate import add_arguments

    add_arguments(evaluate)

    train = commands.add_parser("train-reader", help="train the reader on RealTimeQA training weeks (under an hour on 2 cores)")
    train.add_argument("--data", type=Path, required=True, metavar="DIR", help="RealTimeQA weeks to train on")
    train.add_argument("--out", type=Path, required=True, metavar="DIR", help="model folder to write")
    train.add_argument("--dev", type=Path, metavar="DIR", help="RealTimeQA weeks for the selection figures (never trained on)")
    train.add_argument("--epochs", type=float, help="passes over the training groups (default: TrainingConfig's, 1.5)")
    train.add_argument(
        "--layers", type=int, metavar="N", help="MiniLM layers the pair model keeps (default: TrainingConfig's, 3)"
    )
    train.add_argument(
        "--max-tokens",
        type=int,
        metavar="N",
        help="tokens a (question, sentence) pair is read to (default: TrainingConfig's, 64)",
    )
    train.add_argument("--limit", type=int, default=0, metavar="N", help="train on the first N questions only (a smoke run)")
    train.add_argument(
        "--model",
        type=Path,
        metavar="DIR",
        help="keep the pair model of this trained reader and fit only the feature weights (minutes, not most of an hour)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # apscheduler: the JobQueue logs each look at the shared schedule (every job_check_seconds) at INFO.
    for noisy in ("httpx", "chromadb", "sentence_transformers", "transformers", "bm25s", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        settings = load_settings(args.config, data_dir=args.data_dir)
    except SettingsError as exc:
        print(f"newsbot: bad settings:\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    handler = {
        "ingest": cmd_ingest,
        "ask": cmd_ask,
        "sources": cmd_sources,
        "stats": cmd_stats,
        "feeds": cmd_feeds,
        "refresh": cmd_refresh,
        "add": cmd_add,
        "serve": cmd_serve,
        "worker": cmd_worker,
        "eval": cmd_eval,
        "train-reader": cmd_train_reader,
    }[args.command]
    try:
        return handler(args, settings)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the edge: say what failed in one line; -v gives the traceback
        logger.debug("failed", exc_info=True)
        if args.verbose:
            raise
        print(f"newsbot: {exc}", file=sys.stderr)
        return EXIT_PARTIAL


def _services(settings: Settings) -> Any:
    from retrieval.service import Services

    return Services(settings)


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    paths = args.paths or [settings.articles_dir]
    report = _services(settings).ingestor.ingest(paths, prune=args.prune)
    for error in report.skipped:
        print(f"skipped {error}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(f"ingest: {report.summary()}")
    return EXIT_OK if report.ok else EXIT_PARTIAL


def format_answer(answer: Any) -> str:
    """The answer and its numbered sources, for a terminal."""
    lines = [answer.text]
    if answer.note:
        lines.append(f"({answer.note})")
    if answer.citations:
        lines.append("")
        lines.append("Sources:")
        for citation in answer.citations:
            details = ", ".join(part for part in (citation.source, citation.published, citation.url) if part)
            lines.append(f"[{citation.n}] {citation.title}" + (f" ({details})" if details else ""))
    return "\n".join(lines)


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    if bool(args.question) == bool(args.batch):
        print("newsbot ask: give a QUESTION or --batch FILE (not both)", file=sys.stderr)
        return EXIT_USAGE
    services = _services(settings)
    if services.store.count() == 0:
        print("newsbot: the index is empty; run `newsbot ingest` first", file=sys.stderr)
        return EXIT_PARTIAL
    answerer = services.answerer
    options = {"as_of": args.as_of, "since": args.since, "until": args.until, "top_k": args.top_k}
    if args.batch:
        return _ask_batch(answerer, args.batch, options)
    answer = answerer.answer(args.question, **options)
    print(json.dumps(answer.to_dict(), indent=2, ensure_ascii=False) if args.json else format_answer(answer))
    return EXIT_OK


def _ask_batch(answerer: Any, path: Path, options: dict[str, Any]) -> int:
    status = EXIT_OK
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"newsbot ask: cannot read {path}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            question = str(item["question"])
            as_of = date.fromisoformat(item["as_of"]) if item.get("as_of") else options["as_of"]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            print(f'{path}:{number}: skipped, expected {{"id", "question"[, "as_of": YYYY-MM-DD]}} ({exc})', file=sys.stderr)
            status = EXIT_PARTIAL
            continue
        answer = answerer.answer(question, **{**options, "as_of": as_of})
        print(json.dumps({"id": item.get("id"), **answer.to_dict()}, ensure_ascii=False), flush=True)
    return status


def cmd_sources(args: argparse.Namespace, settings: Settings) -> int:
    articles = sorted(_services(settings).store.articles().values(), key=lambda a: (a.published or "", a.title))
    if args.json:
        print(json.dumps([a.__dict__ for a in articles], indent=2, ensure_ascii=False))
        return EXIT_OK
    for article in articles:
        details = ", ".join(part for part in (article.source, article.published) if part)
        print(f"{article.doc_id}  {article.title}" + (f" ({details})" if details else "") + f"  [{article.chunks} chunks]")
    print(f"{len(articles)} articles")
    return EXIT_OK


def collection_stats(settings: Settings) -> dict[str, Any]:
    """Articles, chunks, date range and disk size of the index."""
    store = _services(settings).store
    articles = store.articles()
    dates = sorted(a.published for a in articles.values() if a.published)
    size = None
    if settings.chroma_mode == "embedded":
        size = sum(f.stat().st_size for f in settings.chroma_path.rglob("*") if f.is_file())
    return {
        "articles": len(articles),
        "chunks": sum(a.chunks for a in articles.values()),
        "first_published": dates[0] if dates else None,
        "last_published": dates[-1] if dates else None,
        "collection": store.live_name,
        "chroma": settings.chroma_mode,
        "disk_bytes": size,
    }


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    stats = collection_stats(settings)
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        for key, value in stats.items():
            print(f"{key:16} {value}")
    return EXIT_OK


def cmd_feeds(args: argparse.Namespace, settings: Settings) -> int:
    from retrieval.ingest.fetch import FetchError

    collector = _services(settings).collector
    if args.action == "add":
        try:
            feed = collector.add_feed(args.url, added_by="cli")
        except FetchError as exc:
            print(f"newsbot feeds add: {exc.reason}", file=sys.stderr)
            return EXIT_USAGE
        print(f"feed {feed.id}: {feed.url} (polled by `newsbot refresh` or a running `newsbot serve`)")
        return EXIT_OK
    if args.action == "remove":
        removed = collector.remove_feed(args.number)
        if removed is None:
            print(f"newsbot feeds remove: there is no feed {args.number}", file=sys.stderr)
            return EXIT_USAGE
        print(f"removed feed {removed.id}: {removed.url} (its articles stay)")
        return EXIT_OK
    feeds = collector.feeds()
    if args.json:
        print(json.dumps([feed.__dict__ for feed in feeds], indent=2, ensure_ascii=False))
        return EXIT_OK
    for feed in feeds:
        print(f"{feed.id}. {feed.name} <{feed.url}>")
        print(f"   last poll {feed.last_poll_at or 'never'}; {feed.last_new} new; {feed.articles} articles")
        if feed.last_error:
            print(f"   error: {feed.last_error}")
        for problem in feed.problems:
            print(f"   not read: {problem}")
    print(f"{len(feeds)} feeds")
    return EXIT_OK


def cmd_refresh(args: argparse.Namespace, settings: Settings) -> int:
    result = _services(settings).refresh_feeds_now()
    failed = False
    for feed_id in result.busy:
        print(f"feed {feed_id}: left to the replica polling it now", file=sys.stderr)
    for polled in result.poll.feeds:
        if polled.error:
            failed = True
            print(f"feed {polled.feed.id} ({polled.feed.url}): {polled.error}", file=sys.stderr)
        for problem in polled.problems:
            print(f"feed {polled.feed.id} ({polled.feed.url}): not read: {problem}", file=sys.stderr)
    if args.json:
        data: dict[str, Any] = {
            "feeds": [
                {
                    "id": p.feed.id,
                    "url": p.feed.url,
                    "not_modified": p.not_modified,
                    "new": len(p.new),
                    "error": p.error,
                    "problems": p.problems,
                }
                for p in result.poll.feeds
            ],
            "busy": result.busy,
            "requests": result.poll.requests,
            "poll_seconds": round(result.poll.seconds, 3),
            "ingest": result.report.to_dict() if result.report else None,
        }
        print(json.dumps(data, indent=2))
    else:
        print(f"refresh: {result.poll.summary()}")
        if result.report is not None:
            print(f"ingest: {result.report.summary()}")
    return EXIT_PARTIAL if failed else EXIT_OK


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    from retrieval.ingest.articles import ArticleError
    from retrieval.ingest.fetch import FetchError

    try:
        result = _services(settings).add_link(args.url)
    except (FetchError, ArticleError) as exc:
        print(f"newsbot add: {exc.reason}", file=sys.stderr)
        return EXIT_PARTIAL
    article = result.article
    details = ", ".join(part for part in (article.source, article.published and article.published.isoformat()) if part)
    print(f"{article.title}" + (f" ({details})" if details else "") + f"; ingest: {result.report.summary()}")
    return EXIT_OK if result.report.ok else EXIT_PARTIAL


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import run, secret

    # The webhook's secret token: --secret-token, else TELEGRAM_WEBHOOK_SECRET, else the file TELEGRAM_WEBHOOK_SECRET_FILE names.
    secret_token = args.secret_token or secret("TELEGRAM_WEBHOOK_SECRET")[0] or None
    return run(settings, webhook_url=args.webhook, listen=args.listen, secret_token=secret_token)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from retrieval.remote.server import run

    if args.threads < 1:
        print("newsbot worker: --threads must be 1 or more", file=sys.stderr)
        return EXIT_USAGE
    # The service says when it listens, when it is ready and why not: a container's log is where one looks.
    logging.getLogger("retrieval.remote").setLevel(logging.INFO)
    return run(settings, args.listen, args.threads)


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from newsbot.evaluate import run

    return run(args, settings)


def training_config(args: argparse.Namespace) -> TrainingConfig:
    """The `TrainingConfig` that `train-reader`'s options ask for: its defaults where an option is not given."""
    from retrieval.evaluation.training import TrainingConfig

    chosen = {"epochs": args.epochs, "layers": args.layers, "max_tokens": args.max_tokens}
    return TrainingConfig(limit=args.limit, **{name: value for name, value in chosen.items() if value is not None})


def cmd_train_reader(args: argparse.Namespace, settings: Settings) -> int:
    """Train a reader and write its folder; point the `reader` setting at it to use it."""
    from retrieval.evaluation.training import train_reader
    from retrieval.index.embedding import default_model_path

    base = Path(settings.embedding_model) if settings.embedding_model else default_model_path()
    report = train_reader(
        args.data,
        args.out,
        base=base,
        dev=args.dev,
        config=training_config(args),
        model_from=args.model,
        progress=lambda m: print(m, flush=True),
    )
    print(f"reader written to {args.out} in {report['seconds']:.0f} s; figures in {args.out / 'training.json'}")
    return EXIT_OK
