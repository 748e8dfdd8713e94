"""The per-app runtime: provider instances, metrics sinks, the stream registry, and ``start``.

One ``StreamService`` per application, created when the app starts and closed when it stops
(``app.cleanup_ctx``). Nothing here is module-level, so two apps in one process are independent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .access import Access
from .config import Config, Part
from .conversations import ConversationStore
from .encoding import encoder_for
from .errors import ConfigError, ProviderError, StreamRejected
from .event_log import StreamLog
from .pipeline import StreamRun
from .plan import Epilogue, StreamPlan
from .record import StreamRecord
from .request_input import StreamParams
from .settings import RouteSettings
from .shared_streams import SharedStreams
from .sink_fanout import SinkFanout
from .stores import LimitStore, StreamStore
from .streams import Stream, StreamRegistry
from .trace_context import stream_trace
from .types import Buffer, GenerationRequest, MessageForm, MetricsSink, Provider, StreamStart

log = logging.getLogger("streamserver")


class StreamService:
    """Starts streams for requests and keeps what they share for the app's lifetime."""

    def __init__(
        self,
        config: Config,
        providers: Mapping[str, Provider],
        sinks: list[MetricsSink],
        conversations: ConversationStore,
        limits: LimitStore,
    ) -> None:
        self.config = config
        self.providers = dict(providers)
        self.metrics_sinks = sinks
        self.sinks = SinkFanout(sinks)
        self.traced = any(getattr(sink, "traces", False) for sink in sinks)
        """A sink records spans: streams get a trace context (``MetricsSink.traces``)."""
        self.conversations = conversations
        try:
            self.access = Access(config.auth, config.limits, limits)
        except ConfigError as exc:  # the keys' variable is missing or empty: say which file
            raise exc.in_file(config.file) from None
        self.streams = StreamRegistry(
            retain_s=config.resume.retain_s, max_streams=config.resume.max_streams
        )
        self.streams.on_finished = self._release
        self._new_buffers: dict[str, Callable[[], Buffer]] = {}
        self.instance_id = secrets.token_hex(8)
        """This process's id in the shared stores (a stream's owner, a lease)."""
        store: StreamStore = make_part(
            config.stream_store, f"resume.{config.stream_store.name}", config.file
        )
        self.shared = (
            SharedStreams(store, config, self.streams, self.instance_id)
            if store.distributed
            else None
        )
        """The streams shared with other instances (``[resume] store``); None with ``memory``."""
        self.draining = False
        self._drained: asyncio.Future[None] | None = None
        self.started_at = time.time()

    @classmethod
    async def open(cls, config: Config) -> StreamService:
        """Create provider instances and sinks; check every route's model against its provider."""
        providers = {
            name: make_part(part, f"providers.{name}", config.file)
            for name, part in config.providers.items()
        }
        sinks: list[MetricsSink] = [
            make_part(part, f"metrics.{part.name}", config.file) for part in config.sinks
        ]
        store: ConversationStore = make_part(
            config.conversation_store, f"conversations.{config.conversations.store}", config.file
        )
        limits: LimitStore = make_part(
            config.limit_store, f"limits.{config.limits.store}", config.file
        )
        service = cls(config, providers, sinks, store, limits)
        try:
            opening = getattr(store, "open", None)  # optional: ConversationStore.open
            if opening is not None:
                await opening(config)
            await limits.open(config, service.instance_id)
            service.check_routes()
            if service.shared is not None:
                await service.shared.open()
        except BaseException:
            await service.close()
            raise
        return service

    def check_routes(self) -> None:
        """Every route's default provider and model must exist, and that provider must honour
        the route's pinned parameters (a config error otherwise)."""
        for name, provider in self.providers.items():
            if not provider.models:
                raise ConfigError(
                    f"providers.{name}.models", "at least one model name", file=self.config.file
                )
        honours = self.parameters()
        for path, route in self.config.routes.items():
            provider_name = route.provider or next(iter(self.providers))
            honoured = honours[provider_name]
            for name in route.pin:
                if name not in honoured:
                    raise ConfigError(
                        f'routes."{path}".pin.{name}',
                        f"a parameter that provider {provider_name!r} honours",
                        choices=honoured,
                        file=self.config.file,
                    )
            models = self.providers[provider_name].models
            if route.model is not None and route.model not in models:
                raise ConfigError(
                    f'routes."{path}".model',
                    f"a model that provider {provider_name!r} offers",
                    got=route.model,
                    choices=models,
                    file=self.config.file,
                )

    async def close(self) -> None:
        """Close every provider (their upstream clients), the stores, the sinks."""
        if self.shared is not None:
            try:
                await self.shared.close()
            except Exception:
                log.exception("closing the stream store failed")
        await asyncio.to_thread(self.sinks.close)
        try:
            await self.conversations.aclose()
        except Exception:
            log.exception("closing the conversation store failed")
        try:
            await self.access.store.aclose()
        except Exception:
            log.exception("closing the limit store failed")
        for provider in self.providers.values():
            try:
                await provider.aclose()
            except Exception:
                log.exception("closing provider %s failed", type(provider).__name__)

    def models(self) -> dict[str, list[str]]:
        """Model names by provider instance."""
        return {name: list(p.models) for name, p in self.providers.items()}

    def parameters(self) -> dict[str, frozenset[str]]:
        """The request parameters each provider instance honours (optional
        ``Provider.parameters``: none by default)."""
        return {name: frozenset(getattr(p, "parameters", ())) for name, p in self.providers.items()}

    def check_parameters(
        self, provider_name: str, provider: Provider, params: StreamParams
    ) -> None:
        """400 ``unsupported_parameter`` when the request sets a parameter the provider does not
        honour: refused, never dropped."""
        honoured = getattr(provider, "parameters", ())
        for name in params.parameters:
            if name not in honoured:
                raise StreamRejected(
                    400,
                    "unsupported_parameter",
                    f"the provider {provider_name!r} cannot honour {name!r} (it honours: "
                    f"{', '.join(sorted(honoured)) or 'none of the request parameters'})",
                )

    def tool_less(self) -> dict[str, frozenset[str]]:
        """The models of each provider instance that call no tools (optional
        ``Provider.tool_models``: every model calls tools by default)."""
        return {
            name: frozenset(p.models).difference(getattr(p, "tool_models", p.models))
            for name, p in self.providers.items()
        }

    @staticmethod
    def check_request(provider: Provider, request: GenerationRequest) -> None:
        """A request the provider says it cannot meet (a forced call on a model outside
        ``Provider.tool_models``, or ``Provider.check``) is a 400 with the provider's code and
        message, before the stream starts."""
        tool_models = getattr(provider, "tool_models", None)  # optional: Provider.tool_models
        if request.forces_call and tool_models is not None and request.model not in tool_models:
            raise StreamRejected(
                400,
                "invalid_tool_choice",
                f"model {request.model!r} calls no tools (those that do: "
                f"{', '.join(tool_models) or 'none'}): tool_choice cannot be met",
            )
        check = getattr(provider, "check", None)  # optional: Provider.check
        if check is None:
            return
        try:
            check(request)
        except ProviderError as exc:
            raise StreamRejected(400, exc.code, exc.message) from None

    def resolve(self, route: RouteSettings, params: StreamParams) -> tuple[str, Provider, str]:
        """Which provider instance and model serve this request (route defaults, then overrides)."""
        provider_name = params.provider or route.provider or next(iter(self.providers))
        if provider_name not in self.providers:
            raise StreamRejected(
                400,
                "unknown_provider",
                f"unknown provider {provider_name!r}; choices: {', '.join(self.providers)}",
            )
        model = params.model or (route.model if params.provider is None else None)
        if model is None:
            return (
                provider_name,
                self.providers[provider_name],
                self.providers[provider_name].models[0],
            )
        if model in self.providers[provider_name].models:
            return provider_name, self.providers[provider_name], model
        if params.provider is None:
            for name, provider in self.providers.items():
                if model in provider.models:
                    return name, provider, model
        offered = sorted({m for p in self.providers.values() for m in p.models})
        raise StreamRejected(
            400, "unknown_model", f"unknown model {model!r}; choices: {', '.join(offered)}"
        )

    async def start(
        self,
        path: str,
        route: RouteSettings,
        params: StreamParams,
        form: MessageForm,
        *,
        key_id: str = "",
        formatter_options: Mapping[str, Any] | None = None,
        epilogue: Epilogue | None = None,
        keep_record: bool = False,
        idempotency: tuple[str, str] | None = None,
        traceparent: str | None = None,
    ) -> Stream:
        """Accept a checked request: build its pipeline and start generating.

        ``form`` is the message form its readers take (``"sse"`` bytes, or ``"json"`` messages for
        a WebSocket or an in-process reader): the caller knows it, the runtime knows no transport.

        ``formatter_options`` overrides the formatter's configured options for this stream (those
        its options class has), e.g. ``include_usage`` from an OpenAI request; a formatter whose
        options have a ``response_format`` field gets the request's (the ``object`` formatter's
        schema) unless ``formatter_options`` says otherwise. ``epilogue`` runs
        once generation has ended and adds the stream's last events. ``keep_record`` gives the stream
        a ``StreamRecord`` (``Stream.record``): what it said, for a consumer that reads it back.
        ``traceparent`` is the request's W3C header: the stream's span continues that trace.
        """
        self.refuse_if_draining()
        provider_name, provider, model = self.resolve(route, params)
        self.check_parameters(provider_name, provider, params)
        # What the client (or route) asked for goes upstream; the cap is enforced by the core only.
        max_tokens = params.max_tokens or route.max_tokens
        trace = stream_trace(traceparent) if self.traced else None
        request = GenerationRequest(
            params.messages,
            model,
            max_tokens,
            tools=params.tools,
            tool_choice=params.tool_choice,
            parallel_tool_calls=params.parallel_tool_calls,
            response_format=params.response_format,
            sampling=params.sampling,
            traceparent=None if trace is None else trace.traceparent,
        )
        self.check_request(provider, request)
        config = self.config
        stream_id = self.streams.new_id()
        identity = None if key_id.startswith("addr:") else key_id or None
        info = StreamStart(
            stream_id, path, provider_name, model, time.time(), key_id=identity, trace=trace
        )
        buffer_name = params.buffer or route.buffer
        buffer_part = config.buffers[buffer_name]
        formatter_part = config.formatters[params.format or route.formatter]
        formatter_settings = formatter_part.options
        overrides = dict(formatter_options or {})
        if request.response_format is not None:  # for a formatter that reads it (``object``)
            overrides.setdefault("response_format", request.response_format)
        if overrides:
            known = {f.name for f in dataclasses.fields(formatter_settings)}
            overrides = {k: v for k, v in overrides.items() if k in known}
            formatter_settings = dataclasses.replace(formatter_settings, **overrides)
        formatter = formatter_part.registration.factory(formatter_settings, form)
        encoder = encoder_for(form, stream_id, formatter.token_event, config.server.retry_ms)
        plan = StreamPlan(
            info=info,
            provider=provider,
            request=request,
            buffer=buffer_part.registration.factory(buffer_part.options),
            new_buffer=self._buffer_factory(buffer_name),
            max_delay_s=buffer_part.timing.max_delay_ms / 1000,
            max_chars=buffer_part.timing.max_chars,
            formatter=formatter,
            encoder=encoder,
            max_tokens=max_tokens or config.limits.max_tokens,
            max_stream_s=config.limits.max_stream_s,
            upstream_idle_s=config.limits.upstream_idle_s,
            epilogue=epilogue,
        )
        resume = config.resume
        stream_log = StreamLog(
            config.limits.high_water_events,
            retain=resume.retain_s > 0 or resume.grace_s > 0,
            max_bytes=resume.max_bytes_per_stream,
            compress=form == "sse",  # JSON message logs hold text
        )
        stream = Stream(
            stream_id,
            path,
            stream_log,
            grace_s=resume.grace_s,
            key_id=key_id,
            form=form,
        )
        stream.info = info
        if idempotency is not None:
            stream.idempotency = (key_id, *idempotency)
        stream.on_delivery = self._delivery
        if keep_record:
            stream.record = StreamRecord()
        stream.headers.update(getattr(formatter, "headers", {}))  # optional: Formatter.headers
        await self.access.acquire_stream(stream_id, key_id)  # 429 at a limit, 503: store away
        shared = self.shared
        if shared is not None:
            try:
                earlier = await shared.publish(
                    stream, formatter_part.name, formatter_options or {}, idempotency
                )
                if earlier is not None:  # the same request, started meanwhile on another instance
                    self.access.release_stream(stream_id, key_id)  # it generates elsewhere
                    assert idempotency is not None
                    return _same_request(await self.find_stream(earlier, key_id), idempotency, path)
                if self.draining:  # began while it was published: say it ended, refuse it
                    await shared.withdraw(stream_id)
                    self.refuse_if_draining()
            except BaseException:  # not started: it does not count (a release is idempotent)
                self.access.release_stream(stream_id, key_id)
                raise
        run = StreamRun(stream, plan, self.sinks)
        self.streams.add(
            stream,
            lambda: asyncio.get_running_loop().create_task(run.run(), name=f"stream {stream_id}"),
        )
        if shared is not None:
            shared.mirror(stream)
            stream.remote_readers = functools.partial(shared.store.readers_elsewhere, stream_id)
        return stream

    def _buffer_factory(self, name: str) -> Callable[[], Buffer]:
        """Another instance of buffer ``name``: one partial per buffer, shared by its streams."""
        factory = self._new_buffers.get(name)
        if factory is None:
            part = self.config.buffers[name]
            factory = functools.partial(part.registration.factory, part.options)
            self._new_buffers[name] = factory
        return factory

    def _release(self, stream: Stream) -> None:
        """An owned stream's generation ended: its slot under the limits is free."""
        assert stream.key_id is not None  # start always gives one
        self.access.release_stream(stream.id, stream.key_id)

    def _delivery(self, stream: Stream, delivered: int, replayed: int) -> None:
        assert stream.info is not None
        self.sinks.tokens_delivered(stream.info, delivered, replayed)

    def refuse_if_draining(self) -> None:
        """503 ``server_shutting_down`` (with ``Retry-After``) once the drain has begun: no new
        stream, and no new WebSocket, which would only be closed again."""
        if self.draining:
            raise StreamRejected(
                503,
                "server_shutting_down",
                "the server is shutting down; retry shortly",
                headers={"Retry-After": "5"},
            )

    async def started_with(
        self, key_id: str, idempotency: tuple[str, str] | None, path: str
    ) -> Stream | None:
        """The stream an earlier request with the same ``Idempotency-Key`` (and the same body)
        started, on this instance or (shared) another, to attach to instead of generating again;
        409 ``idempotency_key_reused`` for the same key with another request."""
        if idempotency is None:
            return None
        stream = self.streams.started_with(key_id, idempotency[0])
        if stream is None and self.shared is not None:
            earlier = await self.shared.started_with(key_id, idempotency[0])
            stream = await self.shared.find(earlier) if earlier is not None else None
        if stream is None:
            return None
        return _same_request(stream, idempotency, path)

    async def find_stream(self, stream_id: str, key_id: str) -> Stream:
        """The live or retained stream, here or (shared) on another instance, if ``key_id`` may
        see it: with auth on, only the key that started it (404 otherwise, as for an unknown
        id)."""
        stream = self.streams.get(stream_id)
        if stream is None and self.shared is not None:
            stream = await self.shared.find(stream_id, key_id if self.access.enabled else None)
        if stream is None or (self.access.enabled and stream.key_id != key_id):
            raise StreamRejected(404, "stream_not_found", "no live or retained stream has that id")
        return stream

    async def cancel(self, stream: Stream) -> None:
        """Cancel a stream: here, or (a replica) on the instance that runs it; 409 if it has
        already finished."""
        finished = stream.finished
        if not finished and stream.replica and self.shared is not None:
            finished = not await self.shared.cancel(stream.id)
        if finished:
            raise StreamRejected(409, "stream_finished", "the stream has already finished")
        if not stream.replica:
            stream.cancel("cancelled")

    async def health(self) -> str | None:
        """``None`` when every shared store answers (within ``[redis] timeout_s``); else why
        not, for ``/health``."""
        checks = [
            getattr(store, "health", None)  # optional: ConversationStore.health
            for store in (self.shared, self.conversations, self.access.store)
            if store is not None and getattr(store, "distributed", store is self.shared)
        ]
        for check in checks:
            if check is None:
                continue
            try:
                async with asyncio.timeout(self.config.redis.timeout_s):
                    problem: str | None = await check()
            except TimeoutError:
                problem = f"a store did not answer within {self.config.redis.timeout_s:g} s"
            if problem is not None:
                return problem
        return None

    async def resume_point(self, stream: Stream, start: int, bad_code: str) -> bool:
        """Whether ``stream`` can be read from ``start`` (410 if those events are gone, 400 with
        ``bad_code`` past its end); True when there is nothing left to send. A resume past the
        start is reported to the sinks. A replica may not have what the client already got
        from the owner yet (the owner writes within ``LAZY_S``, at once once it is followed):
        it waits for that, up to ``[redis] lease_s``, then answers 503."""
        if stream.replica and start > stream.log.end and not stream.finished:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.redis.lease_s):
                    await stream.log.wait(start - 1)
            if start > stream.log.end and not stream.finished:
                raise StreamRejected(
                    503,
                    "store_behind",
                    "the stream store does not have what you received yet; retry shortly",
                    headers={"Retry-After": "1"},
                )
        if start > stream.log.end:
            raise StreamRejected(
                400, bad_code, f"that stream has only {stream.log.end} events so far"
            )
        if not stream.log.available(start):
            raise StreamRejected(
                410, "events_expired", "the events after that id are no longer kept"
            )
        if start and stream.info is not None:
            self.sinks.stream_resumed(stream.info)
        return stream.finished and start >= stream.log.end

    def reject(self, route: str, error: StreamRejected) -> None:
        """Tell the sinks a request was refused."""
        self.sinks.request_rejected(route, error.status, error.code)

    async def drain(
        self, grace_s: float, then: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Refuse new streams, give live ones ``grace_s`` to finish, then cancel the rest; then
        ``then`` (the transports close their connections: WebSockets with 1001, once they have
        sent what their streams ended with).

        Called again (the command line drains before aiohttp's shutdown, which drains too), it
        waits for the first drain instead of starting another."""
        if self._drained is None:
            self._drained = asyncio.ensure_future(self._drain(grace_s, then))
        await self._drained

    async def _drain(self, grace_s: float, then: Callable[[], Awaitable[None]] | None) -> None:
        self.draining = True
        began = time.monotonic()
        live = [s.task for s in self.streams.live() if s.task is not None]
        log.info("draining: %d live streams; up to %gs to finish", len(live), grace_s)
        if live:
            await asyncio.wait(live, timeout=grace_s)
        cut = self.streams.live()
        for stream in cut:
            stream.cancel("shutdown")
        remaining = [s.task for s in cut if s.task is not None]
        for replica in self.streams.replicas():  # their streams go on on their owners
            if replica.task is not None:
                replica.task.cancel()
                remaining.append(replica.task)
        if remaining:
            await asyncio.wait(remaining, timeout=5)
        if then is not None:
            await then()
        log.info(
            "drained in %.2fs: %d streams finished, %d ended with server_shutdown",
            time.monotonic() - began,
            len(live) - len(cut),
            len(cut),
        )


def _same_request(stream: Stream, idempotency: tuple[str, str], path: str) -> Stream:
    """``stream``, started by an earlier request with this ``Idempotency-Key``, if that request
    was this one (the same body, on the same route); else 409 ``idempotency_key_reused``."""
    if (
        stream.idempotency is None
        or stream.idempotency[2] != idempotency[1]
        or stream.route != path
    ):
        raise StreamRejected(
            409,
            "idempotency_key_reused",
            "this Idempotency-Key was sent with another request: use a new key per request",
        )
    return stream


def make_part(part: Part, section: str, file: str | None) -> Any:
    """Call a registered factory with its validated options. A factory's ``ConfigError`` names keys
    relative to its own section; this puts the section and file in front."""
    factory: Any = part.registration.factory
    try:
        return factory(part.options)
    except ConfigError as exc:
        raise ConfigError(
            f"{section}.{exc.key}" if exc.key else section,
            exc.expected,
            got=exc.got,
            choices=exc.choices,
            file=file,
        ) from None
