"""Hostile requests (issue 7): a 2 GB upload and XML bodies for Open311, each refused with a clear answer
before the service reads (or holds) more than its limit.

The 2 GB upload is never sent whole: over a raw socket to `gridsvc serve`, the headers claim 2 GB (or the
body is chunked, from a generator that would produce 2 GB) and the test checks how early the 413 comes.
"""

from __future__ import annotations

import contextlib
import select
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.api.app import create_app
from gridsvc.db.engine import make_engine, make_session_factory
from gridsvc.services.access import LOCAL_OPERATOR, create_key
from gridsvc.settings import Settings
from tests.conftest import scratch_database, served_gridsvc

MiB = 1 << 20
TWO_GB = 2 * 1000**3
SERVED_LIMIT = 64 * MiB
BOUNDARY = "gridsvc-hostile"


def multipart_head(filename: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/geopackage+sqlite3\r\n\r\n"
    ).encode()


def request_head(base: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {urlsplit(base).netloc}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection without answering: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def connect(base: str) -> socket.socket:
    parts = urlsplit(base)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    return sock


def server_process(base: str) -> psutil.Process:
    """The `gridsvc serve` child process listening on ``base``'s port."""
    port = urlsplit(base).port
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if any(c.laddr.port == port for c in child.net_connections(kind="tcp")):
                return child
    raise AssertionError(f"no process listens on port {port}")


@pytest.fixture(scope="module")
def served_staff(database_url: str) -> Iterator[tuple[str, str]]:
    """`gridsvc serve` with a 64 MiB upload limit on a database of its own, and a gis_staff key it knows."""
    url = scratch_database(database_url, "gridsvc_hostile_uploads")
    engine: Engine = make_engine(url)
    issued = create_key(make_session_factory(engine), name="测绘员", role="gis_staff", actor=LOCAL_OPERATOR)
    engine.dispose()
    with served_gridsvc(url, MAX_UPLOAD_BYTES=str(SERVED_LIMIT)) as base:
        yield base, issued.secret


def test_a_2_gb_upload_is_refused_from_its_content_length_before_it_is_read(
    served_staff: tuple[str, str],
) -> None:
    base, key = served_staff
    head = request_head(
        base,
        "/v1/imports/components",
        {
            "X-API-Key": key,
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            "Content-Length": str(TWO_GB),
        },
    )
    with connect(base) as sock:
        sock.sendall(head + multipart_head("city.gpkg") + bytes(64 * 1024))
        # The answer comes while 2 GB minus 64 KB are still unsent: the server did not wait for them.
        status, headers, body = read_response(sock)
    assert status == 413 and headers["content-type"] == "application/problem+json"
    assert b"larger than 64 MiB (GRIDSVC_MAX_UPLOAD_BYTES)" in body


def test_a_chunked_upload_is_cut_off_at_the_limit_in_bounded_memory(served_staff: tuple[str, str]) -> None:
    base, key = served_staff
    server = server_process(base)
    head = request_head(
        base,
        "/v1/imports/components",
        {
            "X-API-Key": key,
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            "Transfer-Encoding": "chunked",
        },
    )

    def two_gigabytes() -> Iterator[bytes]:
        yield multipart_head("city.gpkg")
        block = bytes(MiB)
        for _ in range(TWO_GB // MiB):
            yield block

    rss_before = server.memory_info().rss
    sent = 0
    answer: tuple[int, dict[str, str], bytes] | None = None
    with connect(base) as sock:
        sock.sendall(head)
        for block in two_gigabytes():
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                answer = read_response(sock)
                break
            try:
                sock.sendall(f"{len(block):x}\r\n".encode() + block + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(block)
        if answer is None:
            answer = read_response(sock)
    rss_after = server.memory_info().rss
    status, headers, body = answer
    assert status == 413 and headers["content-type"] == "application/problem+json"
    assert b"larger than 64 MiB" in body, body
    # The server stopped reading at 64 MiB; what more was sent sat in socket buffers (a few MB at most).
    assert SERVED_LIMIT < sent < SERVED_LIMIT + 32 * MiB, f"{sent / MiB:.0f} MiB were sent"
    assert rss_after - rss_before < 32 * MiB, f"the server grew {(rss_after - rss_before) / MiB:.0f} MiB"


def test_an_upload_over_the_limit_is_413_problem_json_in_process(
    test_settings: Settings, database_url: str, sessions: sessionmaker[Session], keys: dict[str, str]
) -> None:
    small = test_settings.model_copy(update={"max_upload_bytes": MiB})
    with TestClient(create_app(small, database_url, sessions=sessions)) as client:
        response = client.post(
            "/v1/imports/components",
            files={"file": ("survey.gpkg", bytes(2 * MiB), "application/geopackage+sqlite3")},
            headers={"X-API-Key": keys["gis_staff"]},
        )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["title"] == "Content too large" and "larger than 1 MiB" in body["detail"]


# --- Open311: XML bodies are refused unread ---------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<service_request><service_code>&lol9;</service_code><lat>36.66</lat><long>117.02</long></service_request>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<service_request><description>&xxe;</description></service_request>"""
BROKEN = b"<service_request><service_code>C0118</service_code><lat>36.6"


def case_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.execute(text("SELECT count(*) FROM case_record")).scalar_one())


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY, BROKEN], ids=["billion", "xxe", "broken"])
@pytest.mark.parametrize("media_type", ["text/xml", "application/xml; charset=utf-8"])
def test_an_xml_body_for_open311_is_400_in_xml_and_never_parsed(
    client: TestClient, keys: dict[str, str], sessions: sessionmaker[Session], body: bytes, media_type: str
) -> None:
    before = case_count(sessions)
    response = client.post(
        "/open311/v2/requests.xml",
        content=body,
        headers={"Content-Type": media_type, "X-API-Key": keys["reporter"]},
    )
    assert response.status_code == 400 and response.headers["content-type"].startswith("text/xml")
    error = ET.fromstring(response.content).find("error")
    assert error is not None and error.findtext("code") == "400"
    description = error.findtext("description") or ""
    assert (
        "the body is XML" in description and "posted as a form" in description and "not read" in description
    )
    assert "lol" not in response.text and "root:" not in response.text
    assert case_count(sessions) == before


def test_an_xml_body_to_the_json_endpoint_answers_the_json_error_list(
    client: TestClient, keys: dict[str, str]
) -> None:
    response = client.post(
        "/open311/v2/requests.json",
        content=BILLION_LAUGHS,
        headers={"Content-Type": "application/xml", "X-API-Key": keys["reporter"]},
    )
    assert response.status_code == 400
    body: list[dict[str, Any]] = response.json()
    assert body[0]["code"] == 400 and "the body is XML (application/xml)" in body[0]["description"]


def test_a_json_body_for_open311_is_400(client: TestClient, keys: dict[str, str]) -> None:
    response = client.post(
        "/open311/v2/requests.json",
        json={"service_code": "C0118", "lat": 36.66, "long": 117.02},
        headers={"X-API-Key": keys["reporter"]},
    )
    assert response.status_code == 400
    assert "the body is application/json" in response.json()[0]["description"]


def test_an_oversized_open311_form_is_413_in_the_error_list(client: TestClient, keys: dict[str, str]) -> None:
    response = client.post(
        "/open311/v2/requests.json",
        data={"service_code": "C0118", "lat": "36.66", "long": "117.02", "description": "很" * 200_000},
        headers={"X-API-Key": keys["reporter"]},
    )
    assert response.status_code == 413
    assert "the form is larger than 256 KiB" in response.json()[0]["description"]


def test_a_locate_batch_over_its_limit_is_413(
    client: TestClient, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gridsvc.api.routes.locate import LocateRoute

    monkeypatch.setattr(LocateRoute, "max_body_bytes", MiB)  # 256 MiB in service; 1 MiB is enough to show
    rows = "id,lon,lat\n" + "".join(f"P{i},117.0213,36.6615\n" for i in range(60_000))
    response = client.post(
        "/v1/locate/batch",
        content=rows.encode(),
        headers={"Content-Type": "text/csv", "X-API-Key": keys["dispatcher"]},
    )
    assert response.status_code == 413 and response.headers["content-type"] == "application/problem+json"
    assert "the batch is larger than 256 MiB" in response.json()["detail"]
