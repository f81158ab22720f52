"""Name search: case-insensitive substring match on a casefolded column, wildcards escaped."""

from __future__ import annotations

from server.domain.errors import InvalidInput

MAX_SEARCH = 200


def contains(column: str, term: str | None) -> tuple[str, list[str]] | None:
    """A condition matching `term` anywhere in a casefolded column, or None for no search."""
    if term is None or not term.strip():
        return None
    if len(term) > MAX_SEARCH:
        raise InvalidInput(f"search is at most {MAX_SEARCH} characters", "search")
    if any(ord(ch) < 32 for ch in term):
        raise InvalidInput("search must not contain control characters", "search")
    folded = term.strip().casefold()
    escaped = folded.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{column} LIKE ? ESCAPE '\\'", [f"%{escaped}%"]
