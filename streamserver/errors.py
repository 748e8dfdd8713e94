"""One exception type per kind of failure, each carrying what a person needs to act on it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class ConfigError(Exception):
    """The configuration is wrong: which file, which dotted key, what was expected.

    The CLI prints ``str(error)`` and exits with status 2; no traceback.
    """

    def __init__(
        self,
        key: str,
        expected: str,
        *,
        file: str | None = None,
        got: object = None,
        choices: Iterable[str] = (),
    ) -> None:
        self.key = key
        self.expected = expected
        self.file = file
        self.got = got
        self.choices = tuple(sorted(choices))
        super().__init__(key, expected)

    def in_file(self, file: str | None) -> ConfigError:
        """The same error, naming the file it came from."""
        return ConfigError(self.key, self.expected, file=file, got=self.got, choices=self.choices)

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file else ""
        key = f"{self.key}: " if self.key else ""
        text = f"{where}{key}expected {self.expected}"
        if self.got is not None:
            text += f", got {self.got!r}"
        if self.choices:
            text += f" (choices: {', '.join(self.choices)})"
        return text


class StreamRejected(Exception):
    """A request refused before any stream starts; the HTTP layer turns it into a JSON error.

    ``{"error": {"code": code, "message": message}}`` with ``status`` and ``headers``.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        super().__init__(message)


class ProviderError(Exception):
    """A provider failed: ``code`` and ``message`` are safe to show a client (no secrets).

    ``retryable`` says whether trying again later may succeed (rate limit, upstream 5xx, a broken
    connection); ``retry_after_s`` is how long the upstream asked to wait (its ``Retry-After``).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        super().__init__(message)
