"""`newsbot eval`: answer a QA set through the bot's own answerer and report the figures."""

from __future__ import annotations

import argparse

from config import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", metavar="FILE", help="seed-style QA file")


def run(args: argparse.Namespace, settings: Settings) -> int:
    raise NotImplementedError
