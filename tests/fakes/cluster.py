"""Several ``streamserver serve`` processes with one nginx round-robin in front of them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from .certificate import Certificate
from .nginx import Nginx
from .server_process import ServerProcess


class Cluster:
    """``count`` instances of ``config``, each in its own folder under ``folder``, and an nginx
    over them (``pages``: path -> HTML it serves itself; over HTTPS and HTTP/2 with a
    ``certificate``). A fresh nginx sends its first request to
    ``instances[0]``, then alternates (round robin, one nginx process)."""

    def __init__(
        self,
        config: Mapping[str, Any],
        folder: Path,
        count: int = 2,
        pages: Mapping[str, str] | None = None,
        certificate: Certificate | None = None,
    ) -> None:
        self.instances = [ServerProcess(config, folder / f"instance-{i}") for i in range(count)]
        self.nginx = Nginx([instance.address for instance in self.instances], pages, certificate)

    def start(self) -> Cluster:
        try:
            for instance in self.instances:
                instance.launch()  # all at once: each takes a moment to import and listen
            for instance in self.instances:
                instance.wait_listening()
            self.nginx.start()
        except BaseException:
            self.close()
            raise
        return self

    @property
    def base_url(self) -> str:
        """nginx's address: what clients use."""
        return self.nginx.base_url

    async def metrics(self) -> list[dict[str, Any]]:
        """Each instance's ``/v1/stream/metrics``, asked directly."""
        async with httpx.AsyncClient(timeout=5) as http:
            return [
                (await http.get(instance.base_url + "/v1/stream/metrics")).json()
                for instance in self.instances
            ]

    def close(self) -> None:
        self.nginx.close()
        for instance in self.instances:
            instance.kill()
