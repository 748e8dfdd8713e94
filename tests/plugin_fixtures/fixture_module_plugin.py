"""A plugin loaded by module name (``plugins.modules = ["fixture_module_plugin"]``) in the tests."""

from __future__ import annotations

from streamserver import hookimpl
from streamserver.builtins.buffers import RawBuffer


@hookimpl
def register_buffers(register):
    register("fixture-module-buffer", RawBuffer, description="raw, registered by module name")
