"""``isls dashboards push``: the generated dashboards into a running Grafana, over its API.

Creates or updates, in this order, the InfluxDB data source (by uid), one folder per
partner agency plus the joint folder (by uid), and every dashboard (by uid). Each
object is read first and written only when it differs from ours, so a second push
with nothing changed makes read requests only: pushing is idempotent and leaves no
new dashboard versions behind.

Authentication is a Grafana service account token (``Authorization: Bearer``); it
never appears in a message. Every failure is an :class:`IslsError` whose one-line
message names the Grafana URL, the object and the reason. Connection errors (refused,
reset, connect timeout) are retried a few times with back-off; HTTP errors are not.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import niquests.exceptions
from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaException
from urllib3.exceptions import InsecureRequestWarning

from control_center.errors import IslsError

# Shorter than this, a token is not searched for in messages (see _Grafana._clean).
MIN_TOKEN_LENGTH = 8
log = logging.getLogger("isls.grafana")

RETRIES = 3  # further attempts after a connection error
RETRY_DELAY = 0.25  # seconds before the first retry; doubles each time
PUSH_MESSAGE = "isls dashboards push"  # the version note Grafana keeps with each save
# Keys Grafana sets on a saved dashboard itself; they never make ours differ.
GRAFANA_MANAGED_KEYS = frozenset({"id", "version"})

_sleep: Callable[[float], None] = time.sleep  # replaced by tests that count back-off


class DashboardLike(Protocol):
    """What :class:`control_center.grafana.dashboards.GeneratedDashboard` provides."""

    @property
    def uid(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def folder(self) -> str: ...
    @property
    def folder_uid(self) -> str: ...
    @property
    def model(self) -> dict[str, Any]: ...


class DashboardSetLike(Protocol):
    """What :class:`control_center.grafana.dashboards.DashboardSet` provides."""

    @property
    def datasource(self) -> dict[str, Any]: ...
    @property
    def dashboards(self) -> Sequence[DashboardLike]: ...


@dataclass(slots=True)
class PushSummary:
    datasource: str = "unchanged"  # "created" | "updated" | "unchanged"
    folders: dict[str, str] = field(default_factory=dict)  # title -> created|updated|unchanged
    dashboards: dict[str, str] = field(default_factory=dict)  # uid -> created|updated|unchanged

    @property
    def writes(self) -> int:
        """How many objects this push created or updated."""
        states = [self.datasource, *self.folders.values(), *self.dashboards.values()]
        return sum(state != "unchanged" for state in states)


def push_dashboards(dashboards: DashboardSetLike, url: str, token: str, *, timeout: float = 10.0,
                    verify: bool = True) -> PushSummary:
    """Make the Grafana at ``url`` hold our data source, folders and dashboards.

    ``token`` is a service account token; creating or changing the data source needs
    the Admin role in the organisation, folders and dashboards need Editor.
    """
    grafana = _Grafana(url, token, timeout=timeout, verify=verify)
    with warnings.catch_warnings():
        if not verify:  # asked for (--insecure): no warning per request
            warnings.simplefilter("ignore", InsecureRequestWarning)
        try:
            summary = PushSummary(datasource=_push_datasource(grafana, dashboards.datasource))
            for folder_uid, title in _folders(dashboards.dashboards):
                summary.folders[title] = _push_folder(grafana, folder_uid, title)
            for dashboard in dashboards.dashboards:
                summary.dashboards[dashboard.uid] = _push_dashboard(grafana, dashboard)
        finally:
            grafana.close()
    log.info("pushed to %s: %d objects created or updated", grafana.url, summary.writes)
    return summary


class _Grafana:
    """A GrafanaApi whose every call turns failures into one-line IslsErrors."""

    def __init__(self, url: str, token: str, *, timeout: float, verify: bool) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._timeout = timeout
        parts = urlsplit(self.url)
        try:
            port = parts.port
        except ValueError:
            raise IslsError(f"Grafana URL {self.url!r} has an invalid port") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise IslsError(f"Grafana URL {self.url!r} is not an http(s)://host[:port][/path] URL")
        if parts.username or parts.password:
            raise IslsError(f"Grafana URL {parts.scheme}://{parts.hostname}: put no user or "
                            f"password in the URL; set GRAFANA_TOKEN instead")
        prefix = parts.path.strip("/")
        # grafana_client's functions are unannotated; Any keeps strict mypy quiet about it.
        # A str auth becomes its TokenAuth: "Authorization: Bearer <token>".
        self.api: Any = GrafanaApi(
            auth=token, host=parts.hostname, port=port, protocol=parts.scheme,
            # GrafanaClient joins the prefix and "api" without a slash of its own.
            url_path_prefix=f"{prefix}/" if prefix else "", verify=verify, timeout=timeout)

    def close(self) -> None:
        self.api.client.s.close()

    def get(self, what: str, request: Callable[[], Any]) -> dict[str, Any] | None:
        """The object ``request`` reads, or None if Grafana answers 404."""
        answer = self.call(what, request, missing_ok=True)
        if answer is None:
            return None
        if not isinstance(answer, dict):
            raise self._error(what, f"the answer is not a Grafana API object: "
                                    f"{str(answer)[:100]!r}")
        return answer

    def call(self, what: str, request: Callable[[], Any], *, missing_ok: bool = False) -> Any:
        for attempt in range(RETRIES + 1):
            try:
                return request()
            except GrafanaException as exc:
                if exc.status_code == 404 and missing_ok:
                    return None
                if exc.status_code == 0 and isinstance(exc.__cause__,
                                                       niquests.exceptions.ConnectTimeout):
                    reason = f"no connection within {self._timeout:g} s"
                    if attempt < RETRIES:
                        self._back_off(what, reason, attempt)
                        continue
                    raise self._unreachable(what, reason) from None
                raise self._http_error(what, exc) from None
            except niquests.exceptions.SSLError as exc:
                raise self._error(what, f"TLS failed: {_reason(exc)} (--insecure skips "
                                        f"certificate verification)") from None
            except niquests.exceptions.ConnectionError as exc:
                if attempt < RETRIES:
                    self._back_off(what, _reason(exc), attempt)
                    continue
                raise self._unreachable(what, _reason(exc)) from None
            except niquests.exceptions.RequestException as exc:
                # Invalid URL, an answer that is not JSON (not a Grafana), ...
                raise self._error(what, _reason(exc)) from None
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _back_off(self, what: str, reason: str, attempt: int) -> None:
        delay = RETRY_DELAY * 2 ** attempt
        log.debug("Grafana %s: %s: %s; retrying in %.2f s", self.url, what,
                  self._clean(reason), delay)
        _sleep(delay)

    def _unreachable(self, what: str, reason: str) -> IslsError:
        return IslsError(self._clean(f"Grafana {self.url} is unreachable ({what}): {reason}; "
                                     f"tried {RETRIES + 1} times"))

    def _http_error(self, what: str, exc: GrafanaException) -> IslsError:
        status = exc.status_code
        message = _grafana_message(exc)
        if status == 401:
            return self._error(what, "authentication failed (401 Unauthorized: "
                                     f"{message}); check that GRAFANA_TOKEN is a valid, "
                                     "unexpired service account token for this Grafana")
        if status == 403:
            return self._error(what, f"permission denied (403 Forbidden: {message}); the "
                                     "token needs the Editor role (Admin for the data "
                                     "source), and provisioned objects are read-only")
        if status == 0:  # a read timeout or another transport failure after connecting
            cause = exc.__cause__
            if isinstance(cause, niquests.exceptions.Timeout):
                return self._error(what, f"no answer within {self._timeout:g} s")
            return self._error(what, _reason(cause) if cause is not None else message)
        return self._error(what, f"HTTP {status}: {message}")

    def _error(self, what: str, reason: str) -> IslsError:
        return IslsError(self._clean(f"Grafana {self.url}: {what}: {reason}"))

    def _clean(self, message: str) -> str:
        """One line, and never the token (even if a server or library echoed it). A
        token too short to be a real one (Grafana's are 40 characters and more) is not
        searched for: replacing every "x" in the message would garble it, not hide it."""
        message = " ".join(message.split())
        if len(self._token) < MIN_TOKEN_LENGTH:
            return message
        return message.replace(self._token, "<token>")


def _grafana_message(exc: GrafanaException) -> str:
    response = exc.response
    if isinstance(response, dict) and response.get("message"):
        return _shorten(str(response["message"]))
    if isinstance(response, str) and response.strip():
        return _shorten(response.strip())
    return _shorten(str(exc.message))


def _shorten(text: str, limit: int = 300) -> str:
    """At most ``limit`` characters, cut between words with an ellipsis (a reason cut
    mid-word, "… grafana.example usin", reads as a typo)."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    if " " in cut:
        cut = cut[:cut.rindex(" ")]
    return cut.rstrip(" ,;:") + "…"


def _reason(exc: BaseException) -> str:
    """The most specific reason in an exception chain: "Connection refused", not a repr."""
    for inner in _chain(exc):
        if isinstance(inner, OSError) and inner.strerror:
            return str(inner.strerror)
    text = str(exc) or type(exc).__name__
    return _shorten(text.splitlines()[0])


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)


def _plain(value: Any) -> Any:
    """``value`` as it comes back from a JSON API (tuples become lists, and so on)."""
    return json.loads(json.dumps(value))


def _push_datasource(grafana: _Grafana, datasource: Mapping[str, Any]) -> str:
    uid = datasource.get("uid")
    if not isinstance(uid, str) or not uid:
        raise IslsError("the generated data source has no uid; rebuild the dashboards")
    what = f"data source {uid}"
    ours = _plain(dict(datasource))
    existing = grafana.get(what, lambda: grafana.api.datasource.get_datasource_by_uid(uid))
    if existing is None:
        grafana.call(what, lambda: grafana.api.datasource.create_datasource(ours))
        return "created"
    if _datasource_matches(existing, ours):
        return "unchanged"
    grafana.call(what, lambda: grafana.api.datasource.update_datasource_by_uid(uid, ours))
    return "updated"


def _datasource_matches(existing: Mapping[str, Any], ours: Mapping[str, Any]) -> bool:
    """Grafana answers with more keys than we send (id, orgId, version, readOnly...): each
    of ours must be equal; secrets are write-only, so they only have to be set."""
    for key, value in ours.items():
        if key == "secureJsonData":
            fields = existing.get("secureJsonFields") or {}
            if not all(fields.get(name) for name in value):
                return False
        elif existing.get(key) != value:
            return False
    return True


def _folders(dashboards: Sequence[DashboardLike]) -> list[tuple[str, str]]:
    """(uid, title) of every folder the dashboards go to, in order of appearance."""
    folders: dict[str, str] = {}
    for dashboard in dashboards:
        if not dashboard.folder_uid:
            continue  # the General folder: always there
        title = folders.setdefault(dashboard.folder_uid, dashboard.folder)
        if title != dashboard.folder:
            raise IslsError(f"folder uid {dashboard.folder_uid} has two titles, {title!r} and "
                            f"{dashboard.folder!r} (dashboard {dashboard.uid}); check "
                            f"grafana.agencies and grafana.joint_folder in the config")
    return list(folders.items())


def _push_folder(grafana: _Grafana, uid: str, title: str) -> str:
    what = f"folder {uid}"
    existing = grafana.get(what, lambda: grafana.api.folder.get_folder(uid))
    if existing is None:
        grafana.call(what, lambda: grafana.api.folder.create_folder(title, uid=uid))
        return "created"
    if existing.get("title") == title:
        return "unchanged"
    grafana.call(what, lambda: grafana.api.folder.update_folder(uid, title=title,
                                                                overwrite=True))
    return "updated"


def _push_dashboard(grafana: _Grafana, dashboard: DashboardLike) -> str:
    what = f"dashboard {dashboard.uid}"
    ours = _plain({"uid": dashboard.uid, **dashboard.model})
    if ours["uid"] != dashboard.uid:
        raise IslsError(f"{what}: its model has uid {ours['uid']!r}; rebuild the dashboards")
    existing = grafana.get(what, lambda: grafana.api.dashboard.get_dashboard(dashboard.uid))
    if existing is not None and _dashboard_matches(existing, ours, dashboard.folder_uid):
        return "unchanged"
    body: dict[str, Any] = {"dashboard": {**ours, "id": None}, "overwrite": True,
                            "message": PUSH_MESSAGE}
    if dashboard.folder_uid:
        body["folderUid"] = dashboard.folder_uid
    grafana.call(what, lambda: grafana.api.dashboard.update_dashboard(body))
    return "created" if existing is None else "updated"


def _dashboard_matches(existing: Mapping[str, Any], ours: Mapping[str, Any],
                       folder_uid: str) -> bool:
    """Same model apart from the keys Grafana manages, and in the same folder."""
    model = existing.get("dashboard")
    if not isinstance(model, dict):
        return False
    meta = existing.get("meta")
    # Grafana before 8 has no folderUid in meta: then only the model is compared.
    if isinstance(meta, dict) and "folderUid" in meta and (meta["folderUid"] or "") != folder_uid:
        return False

    def strip(value: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in value.items() if k not in GRAFANA_MANAGED_KEYS}

    return strip(model) == strip(ours)
