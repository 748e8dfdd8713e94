"""The demo page's files (``streamserver/static/``) as the server serves them, read over real HTTP.

The page is ES modules with no build step: a browser runs a module only when it is served with a
JavaScript MIME type, and the page must also work when the app is mounted under a prefix, so every
URL it loads is relative. How the page behaves in a browser is in ``tests/test_demo_page.py``.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin

import pytest
from aiohttp import web
from conftest import Client, ServeFactory, base_config

import streamserver
from streamserver.web.admin import STATIC_DIR

JAVASCRIPT_TYPES = {"text/javascript", "application/javascript"}
# The module specifiers of `import … from "…"` and `import "…"` (the page's modules use no others).
IMPORT = re.compile(r"""^\s*import\s+(?:[^"';]*?\s+from\s+)?["']([^"']+)["']""", re.MULTILINE)


class ScriptTags(HTMLParser):
    """The attributes of every ``<script>`` tag of a page, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append(dict(attrs))


async def script_tags(client: Client, page: str) -> list[dict[str, str | None]]:
    response = await client.http.get(page)
    assert response.status_code == 200
    parser = ScriptTags()
    parser.feed(response.text)
    return parser.scripts


async def mounted(serve: ServeFactory, prefix: str) -> tuple[Client, str]:
    """A server with the app at ``prefix`` (``""``: the app itself); returns it and the page's path."""
    if not prefix:
        return await serve(base_config()), "/"
    outer = web.Application()
    outer.add_subapp(prefix + "/", streamserver.create_app(base_config()))
    return await serve(app=outer), prefix + "/"


async def test_the_page_loads_its_script_as_a_module_by_a_relative_url(client):
    scripts = await script_tags(client, "/")
    assert scripts == [{"type": "module", "src": "static/app.js"}]


@pytest.mark.parametrize("prefix", ["", "/llm"], ids=["at the root", "under a prefix"])
async def test_every_script_of_the_page_is_a_module_it_imports_served_as_javascript(serve, prefix):
    client, page = await mounted(serve, prefix)
    entries = [tag["src"] for tag in await script_tags(client, page) if tag.get("type") == "module"]
    pending = [urljoin(page, src) for src in entries if src]
    served: set[str] = set()
    while pending:
        url = pending.pop()
        if url in served:
            continue
        response = await client.http.get(url)
        assert response.status_code == 200, url
        assert response.headers["content-type"].partition(";")[0] in JAVASCRIPT_TYPES, url
        served.add(url)
        for specifier in IMPORT.findall(response.text):
            assert specifier.startswith("./"), f"{url} imports {specifier!r}: not relative"
            pending.append(urljoin(url, specifier))
    shipped = {f"{page}static/{path.name}" for path in STATIC_DIR.glob("*.js")}
    assert served == shipped
