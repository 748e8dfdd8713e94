"""Plausible values for the simulated model's tool arguments: what a property's name suggests (a
``city`` gets a city, a ``max_results`` a small count, a ``query`` the user's words) and what each
string ``format`` looks like. ``sim_schema`` then holds them to the schema's constraints."""

from __future__ import annotations

import datetime
import random
import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any

WORDS = ("stream", "token", "buffer", "reader", "server", "client", "answer", "model", "event",
          "signal", "steady", "river", "quiet", "harbor", "lantern", "orbit", "meadow", "pixel",
          "summit", "copper", "velvet", "amber", "cedar", "delta", "echo")  # fmt: skip
_STRINGS: tuple[tuple[frozenset[str], tuple[str, ...]], ...] = (
    (frozenset({"city", "town"}), ("Paris", "Tokyo", "Lisbon", "Nairobi", "Montreal", "Osaka")),
    (
        frozenset({"location", "place", "address", "destination", "origin"}),
        ("Paris, France", "Tokyo, Japan", "Lisbon, Portugal", "Nairobi, Kenya", "Toronto, Canada"),
    ),
    (frozenset({"country"}), ("France", "Japan", "Portugal", "Kenya", "Canada", "Chile")),
    (frozenset({"name", "author", "person", "owner"}), ("Ada Lovelace", "Alan Turing",
                                                        "Grace Hopper", "Katherine Johnson")),
    (frozenset({"username", "user", "handle", "login"}), ("ada", "aturing", "ghopper", "kj")),
    (frozenset({"unit", "units"}), ("celsius", "metric", "fahrenheit")),
    (frozenset({"language", "lang", "locale"}), ("en", "fr", "ja", "pt")),
    (frozenset({"currency"}), ("EUR", "USD", "JPY", "GBP")),
    (frozenset({"color", "colour"}), ("teal", "amber", "crimson", "slate")),
    (frozenset({"phone", "telephone"}), ("+1 555 0100", "+44 20 7946 0958")),
    (frozenset({"status", "state"}), ("open", "active", "pending", "done")),
)  # fmt: skip
_FROM_PROMPT = frozenset({"query", "q", "search", "text", "prompt", "question", "message", "topic",
                          "input", "keywords", "term", "content", "expression", "formula",
                          "equation"})  # fmt: skip
_INTEGERS = (
    (frozenset({"year"}), (2000, 2026)),
    (frozenset({"age"}), (18, 80)),
    (frozenset({"count", "limit", "n", "k", "top", "results", "max", "num", "number", "size"}),
     (1, 10)),
    (frozenset({"page"}), (1, 5)),
    (frozenset({"days", "day", "hours", "hour", "minutes"}), (1, 7)),
)  # fmt: skip
_NUMBERS = (
    (frozenset({"latitude", "lat"}), (-90.0, 90.0)),
    (frozenset({"longitude", "lon", "lng"}), (-180.0, 180.0)),
    (frozenset({"price", "amount", "cost", "total"}), (1.0, 500.0)),
    (frozenset({"temperature", "temp"}), (-10.0, 35.0)),
)


def _hint_parts(name: str) -> set[str]:
    """``maxResults``, ``max_results``, ``max-results`` -> {"max", "results"}."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return {part for part in re.split(r"[^a-zA-Z0-9]+", spaced.lower()) if part}


def _hinted(name: str, table: Sequence[tuple[frozenset[str], Any]]) -> Any:
    parts = _hint_parts(name)
    for keys, value in table:
        if parts & keys:
            return value
    return None


def _date(rng: random.Random) -> datetime.date:
    return datetime.date(2024, 1, 1) + datetime.timedelta(days=rng.randrange(3 * 365))


def _time(rng: random.Random) -> str:
    return f"{rng.randrange(7, 20):02d}:{rng.choice((0, 15, 30, 45)):02d}:00"


FORMATS: dict[str, Callable[[random.Random], str]] = {  # what each format looks like
    "date": lambda rng: _date(rng).isoformat(),
    "date-time": lambda rng: f"{_date(rng).isoformat()}T{_time(rng)}Z",
    "time": lambda rng: f"{_time(rng)}Z",
    "email": lambda rng: f"{rng.choice(('ada', 'alan', 'grace', 'kj'))}@example.com",
    "uri": lambda rng: f"https://example.com/{rng.choice(WORDS)}",
    "url": lambda rng: f"https://example.com/{rng.choice(WORDS)}",
    "iri": lambda rng: f"https://example.com/{rng.choice(WORDS)}",
    "uri-reference": lambda rng: f"/{rng.choice(WORDS)}",
    "uuid": lambda rng: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    "hostname": lambda rng: f"{rng.choice(WORDS)}.example.com",
    "ipv4": lambda rng: f"192.0.2.{rng.randrange(1, 255)}",
    "ipv6": lambda rng: f"2001:db8::{rng.randrange(1, 0xFFFF):x}",
}


def integer_range(name: str) -> tuple[int, int]:
    """Where an integer of this name plausibly lies, when its schema leaves it open."""
    found: tuple[int, int] | None = _hinted(name, _INTEGERS)
    return found or (1, 100)


def number_range(name: str) -> tuple[float, float]:
    """Where a number of this name plausibly lies, when its schema leaves it open."""
    found: tuple[float, float] | None = _hinted(name, _NUMBERS)
    return found or (0.0, 100.0)


class Plausible:
    """Strings that fit their names, for one request (``prompt``: its last user message)."""

    def __init__(self, prompt: str) -> None:
        self.prompt = " ".join(prompt.split()[:8])
        """The user's words, for a ``query``-like string."""
        self._said = prompt.casefold()

    def string(self, name: str, rng: random.Random) -> str:
        """A string for a property (or array items) called ``name``."""
        parts = _hint_parts(name)
        if parts & {"date", "day", "birthday"}:
            return FORMATS["date"](rng)
        if parts & {"email", "mail"}:
            return FORMATS["email"](rng)
        if parts & {"url", "uri", "link", "website", "href"}:
            return FORMATS["uri"](rng)
        if parts & {"id", "uuid", "key"}:
            return f"{rng.choice(WORDS)[:3]}_{rng.getrandbits(24):06x}"
        if parts & _FROM_PROMPT and self.prompt:
            return self.prompt
        choices = _hinted(name, _STRINGS)
        if choices:  # the one the user named, if they did ("weather in Paris")
            said = [c for c in choices if c.split(",")[0].casefold() in self._said]
            return str(rng.choice(said or choices))
        return " ".join(rng.sample(WORDS, 2))
