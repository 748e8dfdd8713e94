"""The kit for plugin authors: a pytest plugin with fixtures, and ready property tests.

Turn it on in your ``conftest.py`` (it is not registered as an automatic ``pytest11`` plugin:
installing streamserver must not change every pytest run in the environment, nor need
hypothesis there)::

    pytest_plugins = ["streamserver.testing"]

    @pytest.fixture
    def streamserver_plugins():
        return ["my_package.plugin"]

Fixtures (``fixtures.py``): ``serve`` (start apps on 127.0.0.1, an ephemeral port each),
``streamserver_client`` (one app with your plugins), ``streamserver_plugins`` and
``streamserver_config`` (what those apps load), ``upstream`` (the fake OpenAI/Anthropic
upstream). The async fixtures need pytest-asyncio's ``asyncio_mode = "auto"``.

Property tests, each one call from a plain test: ``assert_lossless_buffer(MyBuffer, options)``
and ``assert_formatter_round_trip(MyFormatter, options, parse=...)``. ``script(deltas)`` is the
prompt that makes the ``scripted`` model yield exactly ``deltas``; ``gather`` runs a provider and
puts its parts back together. Install with ``pip install "streamserver[testing]"``.
"""

from .buffer_properties import assert_lossless_buffer
from .fixtures import (
    DEFAULT_SECTIONS,
    FAST_SIMULATED,
    Client,
    Received,
    ServeFactory,
    plugin_config,
    serve,
    streamserver_client,
    streamserver_config,
    streamserver_plugins,
    upstream,
    wait_until,
)
from .formatter_properties import assert_formatter_round_trip
from .parts import Gathered, gather, gather_parts
from .scripted import script

__all__ = [
    "DEFAULT_SECTIONS",
    "FAST_SIMULATED",
    "Client",
    "Gathered",
    "Received",
    "ServeFactory",
    "assert_formatter_round_trip",
    "assert_lossless_buffer",
    "gather",
    "gather_parts",
    "plugin_config",
    "script",
    "serve",
    "streamserver_client",
    "streamserver_config",
    "streamserver_plugins",
    "upstream",
    "wait_until",
]
