"""The HTTP client of InfluxDB's v1 API: ``POST /write`` (line protocol, each answer
classified) and ``/query`` (InfluxQL), over one aiohttp session with the configured
credentials. The only part of the writer that talks HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

import aiohttp

from control_center.config import InfluxSettings
from control_center.errors import ServerError
from control_center.storage.answers import Answer, classify

log = logging.getLogger("isls.storage")


def influx_headers(settings: InfluxSettings) -> dict[str, str]:
    """The Authorization header for the configured token (2.x/3.x) or account (1.x)."""
    if settings.token:
        return {"Authorization": f"Token {settings.token}"}
    if settings.username and settings.password:
        pair = f"{settings.username}:{settings.password}".encode()
        return {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}
    return {}


class InfluxHttp:
    """One session to one InfluxDB database; :meth:`open` before use, :meth:`close` after."""

    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    def open(self) -> None:
        timeout = aiohttp.ClientTimeout(total=30)
        self._session = aiohttp.ClientSession(timeout=timeout,
                                              headers=influx_headers(self.settings))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def write(self, body: bytes) -> Answer:
        """One POST, classified; no answer at all is ``unreachable``, never an exception."""
        assert self._session is not None, "use InfluxWriter as an async context manager"
        params = {"db": self.settings.database, "precision": "ns"}
        try:
            async with self._session.post(f"{self.settings.url}/write", params=params,
                                          data=body) as response:
                if response.status == 204:
                    return Answer("stored", 204)
                return classify(response.status, await response.text(errors="replace"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Answer("unreachable", 0, str(exc) or type(exc).__name__)

    async def query(self, influxql: str, *, method: str = "GET") -> dict[str, Any]:
        assert self._session is not None, "use InfluxWriter as an async context manager"
        params = {"q": influxql, "db": self.settings.database, "epoch": "ns"}
        async with self._session.request(method, f"{self.settings.url}/query",
                                         params=params) as response:
            if response.status == 401:
                raise ServerError(f"InfluxDB at {self.settings.url} refused the credentials "
                                  f"(401); check ISLS_INFLUX_USER / ISLS_INFLUX_PASSWORD or "
                                  f"ISLS_INFLUX_TOKEN")
            body: dict[str, Any] = await response.json(content_type=None)
            if response.status >= 400:
                raise ServerError(f"InfluxDB query failed ({response.status}): "
                                  f"{body.get('error', body)}")
            return body

    async def ensure_database(self, *, attempts: int | None = None) -> None:
        """Create the database if needed, retrying with back-off while unreachable."""
        delay = 0.25
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.query(f'CREATE DATABASE "{self.settings.database}"', method="POST")
                return
            except ServerError as exc:
                if "(403)" in str(exc):
                    # A write-only account (as it should be) may not create databases;
                    # the administrator did. A wrong password is 401 and stops here.
                    log.info("InfluxDB account %s may not create databases; using %r as it "
                             "is", self.settings.username, self.settings.database)
                    return
                raise
            except (aiohttp.ClientError, TimeoutError) as exc:
                if attempts is not None and attempt >= attempts:
                    raise ServerError(f"InfluxDB at {self.settings.url} is unreachable after "
                                      f"{attempt} attempts: {exc}") from None
                log.warning("InfluxDB at %s unreachable (%s); retrying in %.1f s",
                            self.settings.url, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.max_retry_delay)

    async def recreate_database(self) -> bool:
        """After a 404 "database not found": create it again; False if that failed."""
        database = self.settings.database
        try:
            await self.query(f'CREATE DATABASE "{database}"', method="POST")
        except ServerError as exc:
            log.error("InfluxDB has no database %r and this account cannot create it (%s): "
                      "an administrator must run CREATE DATABASE \"%s\"; writes are retried "
                      "until then", database, exc, database)
            return False
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("InfluxDB has no database %r; creating it failed (%s)", database,
                        str(exc) or type(exc).__name__)
            return False
        log.warning("InfluxDB had no database %r (dropped?): created it again; the writes "
                    "that found it missing are retried", database)
        return True
