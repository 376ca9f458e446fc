"""``push_dashboards`` against a fake Grafana: a real HTTP server on a loopback port
that answers the documented Grafana HTTP API for data sources, folders and dashboards,
checks the bearer token and records every request."""

from __future__ import annotations

import contextlib
import copy
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from control_center.errors import IslsError
from control_center.grafana import push as grafana_push
from control_center.grafana.dashboards import DashboardSet, GeneratedDashboard
from control_center.grafana.push import PushSummary, push_dashboards
from control_center.operations.servers import free_port

TOKEN = "glsa_isls-test-token-0123456789abcdef"
DATASOURCE: dict[str, Any] = {
    "uid": "isls-influxdb", "name": "ISLS InfluxDB", "type": "influxdb",
    "url": "http://influxdb:8086", "access": "proxy",
    "jsonData": {"dbName": "isls", "httpMode": "POST", "version": "InfluxQL"},
}


def _model(uid: str, title: str, measurement: str) -> dict[str, Any]:
    return {
        "uid": uid, "title": title, "tags": ["isls", measurement], "timezone": "utc",
        "schemaVersion": 39, "refresh": "5s", "time": {"from": "now-15m", "to": "now"},
        "panels": [{
            "id": 1, "type": "timeseries", "title": "Battery voltage",
            "gridPos": {"h": 8, "w": 12, "x": 0, "y": 0},
            "datasource": {"type": "influxdb", "uid": "isls-influxdb"},
            "fieldConfig": {"defaults": {"unit": "volt", "thresholds": {"mode": "absolute",
                            "steps": [{"color": "red", "value": None},
                                      {"color": "yellow", "value": 24.0},
                                      {"color": "green", "value": 26.5}]}}},
            "targets": [{"refId": "A", "rawQuery": True, "resultFormat": "time_series",
                         "query": f'SELECT mean("battery_voltage") FROM "{measurement}" '
                                  "WHERE $timeFilter GROUP BY time($__interval) fill(null)"}],
        }],
    }


def make_set(**changed_models: dict[str, Any]) -> DashboardSet:
    """Three dashboards in three folders; ``changed_models`` replaces models by uid."""
    specs = [("lander-power", "Lander power", "Roscosmos", "isls-roscosmos", "lander_power"),
             ("orbiter-power", "Orbiter power", "CNSA", "isls-cnsa", "orbiter_power"),
             ("isls-overview", "ISLS overview", "ISLS joint", "isls-joint", "lander_power")]
    dashboards = tuple(
        GeneratedDashboard(uid=uid, title=title, folder=folder, folder_uid=folder_uid,
                           model=changed_models.get(uid, _model(uid, title, measurement)))
        for uid, title, folder, folder_uid, measurement in specs)
    return DashboardSet(datasource=copy.deepcopy(DATASOURCE), dashboards=dashboards)


# --- the fake Grafana ---------------------------------------------------------------

@dataclass
class FakeGrafana:
    token: str = TOKEN
    prefix: str = ""  # served under this path, as behind a reverse proxy
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> dashboard+meta
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    # (method, path) -> (status, body) answered instead, e.g. to simulate a server error
    failures: dict[tuple[str, str], tuple[int, dict[str, Any]]] = field(default_factory=dict)
    next_id: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)

    def writes(self) -> list[tuple[str, str, Any]]:
        return [r for r in self.requests if r[0] != "GET"]

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def handle(self, method: str, path: str, headers: Any,
               body: Any) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if not path.startswith(f"{self.prefix}/api/"):
                return 404, {"message": "Not found"}
            path = path[len(self.prefix):]
            self.requests.append((method, path, body))
            if headers.get("Authorization") != f"Bearer {self.token}":
                return 401, {"message": "invalid API key"}
            if (method, path) in self.failures:
                return self.failures[method, path]
            return self._route(method, path, body)

    def _route(self, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        if match := re.fullmatch(r"/api/datasources/uid/([^/]+)", path):
            uid = match[1]
            if uid not in self.datasources:
                return 404, {"message": "Data source not found"}
            if method == "GET":
                return 200, self.datasources[uid]
            if method == "PUT":
                stored = self._store_datasource(body, self.datasources[uid])
                return 200, {"datasource": stored, "id": stored["id"],
                             "message": "Datasource updated", "name": stored["name"]}
        if path == "/api/datasources" and method == "POST":
            if any(d["name"] == body["name"] for d in self.datasources.values()):
                return 409, {"message": "data source with the same name already exists"}
            stored = self._store_datasource(body, None)
            return 200, {"datasource": stored, "id": stored["id"],
                         "message": "Datasource added", "name": stored["name"]}
        if match := re.fullmatch(r"/api/folders/([^/]+)", path):
            uid = match[1]
            if uid not in self.folders:
                return 404, {"message": "folder not found"}
            if method == "GET":
                return 200, self.folders[uid]
            if method == "PUT":
                folder = self.folders[uid]
                if not body.get("overwrite") and body.get("version") != folder["version"]:
                    return 412, {"message": "the folder has been changed by someone else",
                                 "status": "version-mismatch"}
                folder.update(title=body["title"], version=folder["version"] + 1)
                return 200, folder
        if path == "/api/folders" and method == "POST":
            uid = body.get("uid")
            if uid in self.folders:
                return 409, {"message": "a folder with the same uid already exists"}
            self.folders[uid] = {"id": self._id(), "uid": uid, "title": body["title"],
                                 "url": f"/dashboards/f/{uid}/", "hasAcl": False,
                                 "canSave": True, "canEdit": True, "canAdmin": True,
                                 "version": 1}
            return 200, self.folders[uid]
        if (match := re.fullmatch(r"/api/dashboards/uid/([^/]+)", path)) and method == "GET":
            if match[1] not in self.dashboards:
                return 404, {"message": "Dashboard not found"}
            return 200, self.dashboards[match[1]]
        if path == "/api/dashboards/db" and method == "POST":
            return self._save_dashboard(body)
        return 404, {"message": "Not found"}

    def _store_datasource(self, body: dict[str, Any],
                          old: dict[str, Any] | None) -> dict[str, Any]:
        stored: dict[str, Any] = {
            "id": old["id"] if old else self._id(), "orgId": 1, "typeLogoUrl": "", "user": "",
            "database": "", "basicAuth": False, "basicAuthUser": "", "withCredentials": False,
            "isDefault": False, "jsonData": {}, "secureJsonFields": {},
            "version": old["version"] + 1 if old else 1, "readOnly": False}
        stored.update({k: v for k, v in body.items() if k != "secureJsonData"})
        stored["secureJsonFields"] = {k: True for k in body.get("secureJsonData", {})}
        self.datasources[stored["uid"]] = stored
        return stored

    def _save_dashboard(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        model = dict(body["dashboard"])
        uid = model["uid"]
        folder_uid = body.get("folderUid", "")
        if folder_uid and folder_uid not in self.folders:
            return 400, {"message": "folder not found"}
        old = self.dashboards.get(uid)
        if old and not body.get("overwrite") and model.get("version") != \
                old["dashboard"]["version"]:
            return 412, {"message": "The dashboard has been changed by someone else",
                         "status": "version-mismatch"}
        version = old["dashboard"]["version"] + 1 if old else 1
        model.update(id=old["dashboard"]["id"] if old else self._id(), version=version)
        self.dashboards[uid] = {"dashboard": model, "meta": {
            "isStarred": False, "url": f"/d/{uid}/", "slug": uid, "folderUid": folder_uid,
            "folderTitle": self.folders[folder_uid]["title"] if folder_uid else "General",
            "version": version, "provisioned": False}}
        return 200, {"id": model["id"], "uid": uid, "url": f"/d/{uid}/", "status": "success",
                     "version": version, "slug": uid}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    grafana: FakeGrafana


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Grafana
    disable_nagle_algorithm = True  # headers and body go out in two writes
    server: _Server

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        status, answer = self.server.grafana.handle(self.command, self.path.split("?")[0],
                                                    self.headers, body)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve(grafana: FakeGrafana, port: int = 0) -> Iterator[str]:
    """The fake on 127.0.0.1 (a free port unless given), in a thread; yields its URL."""
    server = _Server(("127.0.0.1", port), _Handler)
    server.grafana = grafana
    # A short poll interval only makes shutdown() return sooner.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), name="fake-grafana",
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{grafana.prefix}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def grafana() -> Iterator[tuple[FakeGrafana, str]]:
    fake = FakeGrafana()
    with serve(fake) as url:
        yield fake, url


def _posts(fake: FakeGrafana, path: str) -> list[Any]:
    return [body for method, p, body in fake.requests if method == "POST" and p == path]


# --- tests ------------------------------------------------------------------------

def test_first_push_creates_data_source_folders_and_dashboards(
        grafana: tuple[FakeGrafana, str]) -> None:
    fake, url = grafana
    dashboards = make_set()

    summary = push_dashboards(dashboards, url, TOKEN)

    assert summary == PushSummary(
        datasource="created",
        folders={"Roscosmos": "created", "CNSA": "created", "ISLS joint": "created"},
        dashboards={"lander-power": "created", "orbiter-power": "created",
                    "isls-overview": "created"})
    assert _posts(fake, "/api/datasources") == [DATASOURCE]
    assert _posts(fake, "/api/folders") == [
        {"uid": "isls-roscosmos", "title": "Roscosmos"}, {"uid": "isls-cnsa", "title": "CNSA"},
        {"uid": "isls-joint", "title": "ISLS joint"}]
    saved = _posts(fake, "/api/dashboards/db")
    assert [body["folderUid"] for body in saved] == ["isls-roscosmos", "isls-cnsa",
                                                     "isls-joint"]
    for body, dashboard in zip(saved, dashboards.dashboards, strict=True):
        assert body["overwrite"] is True
        assert body["message"] == "isls dashboards push"
        assert body["dashboard"] == {**dashboard.model, "id": None}  # the model, intact
    # Nothing but these writes, and each object read before it was written.
    assert len(fake.writes()) == 1 + 3 + 3
    assert fake.requests[0][:2] == ("GET", "/api/datasources/uid/isls-influxdb")
    assert fake.dashboards["orbiter-power"]["meta"]["folderTitle"] == "CNSA"


def test_second_push_only_reads(grafana: tuple[FakeGrafana, str]) -> None:
    fake, url = grafana
    push_dashboards(make_set(), url, TOKEN)
    versions = {uid: d["dashboard"]["version"] for uid, d in fake.dashboards.items()}
    fake.requests.clear()

    summary = push_dashboards(make_set(), url, TOKEN)

    assert {method for method, _, _ in fake.requests} == {"GET"}
    assert len(fake.requests) == 1 + 3 + 3
    assert summary.datasource == "unchanged"
    assert set(summary.folders.values()) == {"unchanged"}
    assert set(summary.dashboards.values()) == {"unchanged"}
    assert summary.writes == 0
    assert {uid: d["dashboard"]["version"] for uid, d in fake.dashboards.items()} == versions


def test_a_changed_dashboard_is_the_only_write(grafana: tuple[FakeGrafana, str]) -> None:
    fake, url = grafana
    push_dashboards(make_set(), url, TOKEN)
    fake.requests.clear()
    changed = _model("orbiter-power", "Orbiter power", "orbiter_power")
    changed["panels"][0]["fieldConfig"]["defaults"]["unit"] = "mV"

    summary = push_dashboards(make_set(**{"orbiter-power": changed}), url, TOKEN)

    assert [(m, p) for m, p, _ in fake.writes()] == [("POST", "/api/dashboards/db")]
    assert fake.writes()[0][2]["dashboard"] == {**changed, "id": None}
    assert fake.writes()[0][2]["folderUid"] == "isls-cnsa"
    assert summary.dashboards == {"lander-power": "unchanged", "orbiter-power": "updated",
                                  "isls-overview": "unchanged"}
    assert fake.dashboards["orbiter-power"]["dashboard"]["version"] == 2
    assert push_dashboards(make_set(**{"orbiter-power": changed}), url, TOKEN).writes == 0


def test_changed_data_source_and_folder_title_are_updated_in_place(
        grafana: tuple[FakeGrafana, str]) -> None:
    fake, url = grafana
    push_dashboards(make_set(), url, TOKEN)
    fake.folders["isls-cnsa"]["title"] = "CNSA (renamed by hand)"
    fake.dashboards["lander-power"]["meta"]["folderUid"] = "isls-cnsa"  # moved by hand
    fake.requests.clear()
    dashboards = make_set()
    dashboards.datasource["url"] = "http://influx.example:8086"

    summary = push_dashboards(dashboards, url, TOKEN)

    assert summary.datasource == "updated"
    assert summary.folders["CNSA"] == "updated"
    assert summary.dashboards["lander-power"] == "updated"
    assert [(m, p) for m, p, _ in fake.writes()] == [
        ("PUT", "/api/datasources/uid/isls-influxdb"), ("PUT", "/api/folders/isls-cnsa"),
        ("POST", "/api/dashboards/db")]
    assert fake.datasources["isls-influxdb"]["url"] == "http://influx.example:8086"
    assert fake.datasources["isls-influxdb"]["id"] == 1  # the same data source
    assert fake.folders["isls-cnsa"]["title"] == "CNSA"
    assert fake.dashboards["lander-power"]["meta"]["folderUid"] == "isls-roscosmos"


def test_wrong_token_is_an_authentication_error_without_the_token(
        grafana: tuple[FakeGrafana, str], caplog: pytest.LogCaptureFixture) -> None:
    fake, url = grafana
    caplog.set_level("DEBUG")
    wrong = "glsa_wrong-token-fedcba9876543210"

    with pytest.raises(IslsError) as raised:
        push_dashboards(make_set(), url, wrong)

    message = str(raised.value)
    assert "401" in message and "authentication failed" in message
    assert url in message and "data source isls-influxdb" in message
    assert "\n" not in message
    for secret in (wrong, TOKEN):
        assert secret not in message
        assert secret not in caplog.text
    assert [(m, p) for m, p, _ in fake.requests] == [
        ("GET", "/api/datasources/uid/isls-influxdb")]  # no retry, no write


def test_unreachable_grafana_is_retried_then_named(monkeypatch: pytest.MonkeyPatch) -> None:
    delays: list[float] = []
    monkeypatch.setattr(grafana_push, "_sleep", delays.append)
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    with pytest.raises(IslsError) as raised:
        push_dashboards(make_set(), url, TOKEN)

    message = str(raised.value)
    assert f"Grafana {url} is unreachable" in message
    assert "data source isls-influxdb" in message and "refused" in message.lower()
    assert TOKEN not in message
    assert delays == [0.25, 0.5, 1.0]  # back-off between the 4 attempts


def test_grafana_that_comes_up_during_the_back_off_is_used(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeGrafana()
    port = free_port()
    delays: list[float] = []
    servers = contextlib.ExitStack()

    def start_grafana(delay: float) -> None:  # the first back-off starts the server
        delays.append(delay)
        if len(delays) == 1:
            servers.enter_context(serve(fake, port))

    monkeypatch.setattr(grafana_push, "_sleep", start_grafana)
    with servers:
        summary = push_dashboards(make_set(), f"http://127.0.0.1:{port}", TOKEN)
    assert delays == [0.25]
    assert summary.datasource == "created" and summary.writes == 7


def test_server_error_names_the_dashboard_and_the_reason(
        grafana: tuple[FakeGrafana, str]) -> None:
    fake, url = grafana
    fake.failures["GET", "/api/dashboards/uid/orbiter-power"] = (
        500, {"message": "Internal Server Error", "traceID": "abc"})

    with pytest.raises(IslsError) as raised:
        push_dashboards(make_set(), url, TOKEN)

    assert str(raised.value) == (f"Grafana {url}: dashboard orbiter-power: HTTP 500: "
                                 "Internal Server Error")
    assert "lander-power" in fake.dashboards  # pushed before the failure
    assert "isls-overview" not in fake.dashboards


def test_forbidden_names_the_role_needed(grafana: tuple[FakeGrafana, str]) -> None:
    fake, url = grafana
    fake.failures["POST", "/api/datasources"] = (
        403, {"message": "You'll need additional permissions to perform this action."})

    with pytest.raises(IslsError, match=r"data source isls-influxdb: permission denied "
                                        r"\(403 Forbidden: You'll need additional"):
        push_dashboards(make_set(), url, TOKEN)


def test_grafana_under_a_path_prefix() -> None:
    fake = FakeGrafana(prefix="/grafana")
    with serve(fake) as url:
        assert url.endswith("/grafana")
        assert push_dashboards(make_set(), url + "/", TOKEN).writes == 7
        assert push_dashboards(make_set(), url, TOKEN).writes == 0


@pytest.mark.parametrize("url", ["grafana.example:3000", "ftp://grafana.example",
                                 "http://admin:admin@grafana.example:3000",
                                 "http://grafana.example:99999"])
def test_bad_urls_are_refused_before_any_request(url: str) -> None:
    with pytest.raises(IslsError, match="Grafana URL"):
        push_dashboards(make_set(), url, TOKEN)


def test_a_long_reason_is_cut_between_words() -> None:
    """A library's long error text is shortened at a word boundary with an ellipsis, not
    mid-word ("… grafana.example usin; tried 4 times" read as a typo)."""
    from control_center.grafana.push import _shorten

    reason = "Failed to resolve 'grafana.example' " + "using the system resolver " * 20
    short = _shorten(reason, 100)
    assert len(short) <= 100 and short.endswith("…")
    assert reason.startswith(short[:-1])
    assert reason[len(short) - 1] == " "  # the cut falls between two words
    assert _shorten("short", 100) == "short"


def test_a_one_letter_token_does_not_garble_the_message(
        grafana: tuple[FakeGrafana, str]) -> None:
    """GRAFANA_TOKEN=x: hiding "x" everywhere turned "unexpired" into "une<token>pired"."""
    _, url = grafana
    with pytest.raises(IslsError) as raised:
        push_dashboards(make_set(), url, "x")
    assert "unexpired service account token" in str(raised.value)
