"""The final set of training weeks: read once per decision about a default, never trained or tuned on.

docs/selection.md gives the protocol and logs every read. The weeks are fixed here so that the code
that trains (`training.py`) cannot fit anything on them by accident.
"""

from __future__ import annotations

FINAL_WEEKS = frozenset(
    {
        "20220902",
        "20221202",
        "20230407",
        "20230811",
        "20231215",
        "20240202",
        "20240830",
        "20241011",
        "20250103",
        "20250214",
        "20250328",
        "20250509",
        "20250620",
        "20250912",
        "20251024",
    }
)


def development_weeks(weeks: list[str]) -> list[str]:
    """`weeks` without the final set: what may be trained, tuned and compared on."""
    return [week for week in weeks if week not in FINAL_WEEKS]
