"""Several ``streamserver serve`` processes with one nginx round-robin in front of them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from .nginx import Nginx
from .server_process import ServerProcess


class Cluster:
    """``count`` instances of ``config``, each in its own folder under ``folder``, and an nginx
    over them (``pages``: path -> HTML it serves itself). A fresh nginx sends its first request to
    ``instances[0]``, then alternates (round robin, one nginx process)."""

    def __init__(
        self,
        config: Mapping[str, Any],
        folder: Path,
        count: int = 2,
        pages: Mapping[str, str] | None = None,
    ) -> None:
        self.instances = [ServerProcess(config, folder / f"instance-{i}") for i in range(count)]
        self.nginx = Nginx([instance.address for instance in self.instances], pages)

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

    def instance_at(self, upstream: str) -> ServerProcess:
        """The instance nginx calls ``upstream`` (``host:port``, as its access log says)."""
        return next(instance for instance in self.instances if instance.address == upstream)

    async def active_streams(self) -> list[int]:
        """Each instance's own count of the streams it is generating (``/health``, asked
        directly, not through nginx)."""
        async with httpx.AsyncClient(timeout=5) as http:
            counts = []
            for instance in self.instances:
                response = await http.get(instance.base_url + "/health")
                counts.append(int(response.json()["active_streams"]))
            return counts

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
