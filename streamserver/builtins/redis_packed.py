"""Redis commands packed by hand into one buffer and sent in one round trip: the ``redis``
stream store's hot path (the owner's writer sends one such batch per loop iteration).

Shaped for speed: redis-py's pipeline packs every command and parses every reply through several
layers of Python; here a command is RESP bytes (``bulk``, ``bulk_int``: a caller packs what never
changes once and formats the rest with one ``%``), the batch goes out in one write on a pooled
connection, and its replies are read under one timeout. The replies are the same values
redis-py's pipeline returns without response callbacks (hiredis parses them).
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..stores import StoreUnavailable
from .redis_connection import describe

if TYPE_CHECKING:
    from .redis_connection import RedisConnection


def bulk(data: bytes) -> bytes:
    """One argument as a RESP bulk string."""
    return b"$%d\r\n%b\r\n" % (len(data), data)


def bulk_int(number: int) -> bytes:
    """An integer argument as a RESP bulk string."""
    digits = b"%d" % number
    return b"$%d\r\n%b\r\n" % (len(digits), digits)


class PackedCommands:
    """Commands to send together; ``send`` returns their replies in order."""

    __slots__ = ("count", "parts")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.count = 0

    def add(self, *args: bytes | str | int) -> None:
        """One command (its name first), each argument as bytes, text (UTF-8) or an integer."""
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            out.append(b"$%d\r\n%b\r\n" % (len(data), data))
        self.parts.append(b"".join(out))
        self.count += 1

    def add_packed(self, command: bytes) -> None:
        """One command already packed as RESP (its parts that never change can be packed once
        and kept: ``bulk``, ``bulk_int``)."""
        self.parts.append(command)
        self.count += 1

    async def send(self, connection: RedisConnection) -> list[Any]:
        """Send every command in one write on one pooled connection and read every reply;
        ``StoreUnavailable`` when Redis fails, as for any other call, or refused one of them
        (after reading every reply: the others took effect)."""
        replies = await connection.call(lambda: self.exchange(connection))
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise StoreUnavailable(describe(reply))
        return replies

    async def exchange(self, connection: RedisConnection) -> list[Any]:
        """Send every command in one write and read every reply, a refused command's as its
        ``ResponseError`` (not raised); Redis failures raise as redis-py's do."""
        pool = connection.client.connection_pool
        link = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await link.send_packed_command(self.parts)
            replies: list[Any] = []
            # One timeout for all the replies: redis-py's own, per reply, costs a timer each
            # (more than the parsing: the replies of a thousand streams' writes took ~20 ms).
            # ``math.inf`` turns it off in redis-py 8 (earlier ones arm a timer that never
            # fires: correct, only slower).
            try:
                async with asyncio.timeout(link.socket_timeout):
                    for _ in range(self.count):
                        try:
                            replies.append(await link.read_response(timeout=math.inf))
                        except ResponseError as exc:  # read whole: the next reply follows it
                            replies.append(exc)
            except TimeoutError:
                raise RedisTimeoutError(f"Timeout reading {self.count} replies") from None
            return replies
        except BaseException:
            # Cut short (a timeout, a cancel): replies may still be on their way, so the
            # connection cannot serve another call.
            await link.disconnect()
            raise
        finally:
            await pool.release(link)
