"""A fault-injecting HTTP proxy in front of the moto S3 server.

The product talks to S3 through this proxy (its bucket block's endpoint), so a test
can make S3 answer 5xx, drop connections, delay or hold a request, and count what
really reached S3. Rules match on the S3 operation (derived from method and query,
the way S3 routes requests) and optionally a part number; the first active rule
that matches a request decides what happens to it.

A store unlike moto: `opaque_etags` gives objects opaque ETags (as AWS does under
SSE-KMS, and GCS), mapped back where a request names one (a copy's If-Match);
`without_checksums` drops every checksum from the answers (as Ceph's gateway does).

Actions:
  status      answer `status` without forwarding (S3 never sees the request)
  drop        close the connection without an answer, before forwarding
  drop_after  forward, then close without an answer (S3 acted, the client never knows)
  delay       wait `delay` seconds, then forward
  hold        block until `Rule.release(forward)`: forward or drop it then
"""

from __future__ import annotations

import hashlib
import http.client
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, unquote, urlsplit

from stream_ingest.blocks.bucket import PROBE_NAME

# Headers that belong to one hop, not to the request: never forwarded.
_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "expect", "te"}
HOLD_LIMIT = 300.0  # a held request is let go after this long, so nothing hangs forever
# A multipart object's ETag ("<md5>-N"), in a header and in an XML answer.
_MULTIPART = re.compile(r'"[0-9a-f]{32}-[0-9]+"')
_MULTIPART_XML = re.compile(r"<ETag>((?:&quot;|\")[0-9a-f]{32}-[0-9]+(?:&quot;|\"))</ETag>")


def s3_operation(method: str, path: str, query: dict[str, list[str]]) -> str:
    """The S3 API operation a path-style request is (only those stream-ingest uses
    need to be exact; the rest get a generic name)."""
    is_object = path.strip("/").count("/") >= 1
    if "uploadId" in query:
        if method == "PUT" and "partNumber" in query:
            return "UploadPart"
        return {
            "POST": "CompleteMultipartUpload",
            "GET": "ListParts",
            "DELETE": "AbortMultipartUpload",
        }.get(method, f"{method}Upload")
    if "uploads" in query:
        return "CreateMultipartUpload" if method == "POST" else "ListMultipartUploads"
    if "tagging" in query:
        return f"{method.capitalize()}ObjectTagging"
    kind = "Object" if is_object else "Bucket"
    return f"{method.capitalize()}{kind}"


@dataclass
class Rule:
    """One fault. `times`: how many matching requests it applies to (None: all);
    `seconds`: how long it stays active after being added (None: until removed)."""

    op: str | None
    action: str
    status: int = 503
    times: int | None = None
    seconds: float | None = None
    delay: float = 0.0
    part: int | None = None
    key: str | None = None  # only requests whose path holds this (an object's key)
    hits: int = 0
    added_at: float = field(default_factory=time.monotonic)
    arrived: threading.Event = field(default_factory=threading.Event)
    _released: threading.Event = field(default_factory=threading.Event)
    _forward: bool = True

    def active(self, now: float) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        return self.seconds is None or now - self.added_at < self.seconds

    def matches(self, op: str, part: int | None, path: str = "") -> bool:
        return (
            (self.op is None or self.op == op)
            and (self.part is None or self.part == part)
            and (self.key is None or self.key in path)
        )

    def release(self, forward: bool = True) -> None:
        """Let a held request go on to S3 (forward) or drop its connection."""
        self._forward = forward
        self._released.set()


@dataclass(frozen=True)
class Call:
    """One request the proxy saw and what became of it. `reached_s3` is True when
    moto processed it (whatever the client then received)."""

    op: str
    upload_id: str | None
    part: int | None
    outcome: str  # "forwarded", "status", "drop", "drop_after", "broken"
    status: int | None
    reached_s3: bool


class FaultProxy:
    """`with FaultProxy(target) as proxy:` serves on `proxy.url`, forwarding to target."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rules: list[Rule] = []
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self.opaque_etags = False
        self.without_checksums = False
        self._real_etags: dict[str, str] = {}  # opaque -> the store's own
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="fault-proxy", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, op: str | None, action: str, **kwargs: object) -> Rule:
        rule = Rule(op, action, **kwargs)  # type: ignore[arg-type]
        with self.lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self.lock:
            rules, self.rules = self.rules, []
        for rule in rules:
            rule.release(forward=False)

    def opaque(self, etag: str) -> str:
        """The opaque ETag shown for a multipart object's ETag ("<md5>-N")."""
        value = '"' + hashlib.sha256(etag.encode()).hexdigest()[:32] + '"'
        with self.lock:
            self._real_etags[value] = etag
        return value

    def real(self, etag: str) -> str:
        with self.lock:
            return self._real_etags.get(etag, etag)

    def disguise(self, headers: list[tuple[str, str]], data: bytes) -> tuple[list, bytes]:
        """The answer as the store this proxy plays would give it."""
        original = data
        if self.opaque_etags:
            headers = [
                (k, self.opaque(v) if k.lower() == "etag" and _MULTIPART.fullmatch(v) else v)
                for k, v in headers
            ]
            data = (
                _MULTIPART_XML.sub(
                    lambda m: "<ETag>" + self.opaque(m[1].replace("&quot;", '"')) + "</ETag>",
                    data.decode("utf-8", "replace"),
                ).encode()
                if b"<ETag>" in data
                else data
            )
        if self.without_checksums:
            headers = [(k, v) for k, v in headers if not k.lower().startswith("x-amz-checksum")]
            data = re.sub(rb"<Checksum[A-Z0-9]+>[^<]*</Checksum[A-Z0-9]+>", b"", data)
        if data != original:  # a rewritten body (never a HEAD's): its own length
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        return headers, data

    def _decide(self, op: str, part: int | None, path: str = "") -> Rule | None:
        now = time.monotonic()
        with self.lock:
            for rule in self.rules:
                if rule.active(now) and rule.matches(op, part, path):
                    rule.hits += 1
                    return rule
        return None

    def record(self, call: Call) -> None:
        with self.lock:
            self.calls.append(call)

    def parts_reached_s3(self, upload_id: str | None = None, since: int = 0) -> list[int]:
        """Part numbers of the UploadPart requests moto processed (of `upload_id`, from
        the `since`-th call the proxy saw on), in arrival order."""
        with self.lock:
            return [
                c.part
                for c in self.calls[since:]
                if c.op == "UploadPart"
                and c.reached_s3
                and c.part is not None
                and upload_id in (None, c.upload_id)
            ]

    def count(self, op: str | None, outcome: str | None = None, since: int = 0) -> int:
        """Requests for `op` (None: any) with `outcome` (None: any), from the
        `since`-th call on."""
        with self.lock:
            return sum(
                1 for c in self.calls[since:] if op in (None, c.op) and outcome in (None, c.outcome)
            )

    def mark(self) -> int:
        """A position in the call log, for `since=`."""
        with self.lock:
            return len(self.calls)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.clear()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive and 100-continue, like S3

        def log_message(self, format: str, *args: object) -> None:
            pass  # the Call log is the record; stderr noise helps nobody

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _drop(self) -> None:
            # RST instead of FIN, like a crashed or partitioned server.
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

        def _handle(self) -> None:
            body = self._body()
            url = urlsplit(self.path)
            query = parse_qs(url.query, keep_blank_values=True)
            op = s3_operation(self.command, url.path, query)
            part = int(query["partNumber"][0]) if "partNumber" in query else None
            upload_id = query.get("uploadId", [None])[0]

            def log(outcome: str, status: int | None, reached: bool) -> None:
                proxy.record(Call(op, upload_id, part, outcome, status, reached))

            if PROBE_NAME in unquote(url.path):
                # The store's capability probe (once per process): not a recording's
                # request, so no rule applies to it and it is not in the call log.
                status, headers, data = self._forward(body)
                headers, data = proxy.disguise(headers, data)
                return self._reply(status, headers, data)
            rule = proxy._decide(op, part, unquote(url.path))
            action = rule.action if rule else "forward"
            if rule is not None and action == "hold":
                rule.arrived.set()
                rule._released.wait(HOLD_LIMIT)
                action = "forward" if rule._forward else "drop"
            if rule is not None and action == "status":
                log("status", rule.status, False)
                return self._reply(rule.status, {}, _error_xml(rule.status))
            if action == "drop":
                log("drop", None, False)
                return self._drop()
            if rule is not None and action == "delay":
                time.sleep(rule.delay)
            try:
                status, headers, data = self._forward(body)
            except OSError:
                log("broken", None, False)
                return self._drop()
            if action == "drop_after":
                log("drop_after", status, True)
                return self._drop()
            log("forwarded", status, True)
            headers, data = proxy.disguise(headers, data)
            self._reply(status, headers, data)

        def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
            conn = http.client.HTTPConnection(*proxy.target, timeout=120)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                headers["Content-Length"] = str(len(body))
                for name in ("x-amz-copy-source-if-match", "If-Match"):
                    for k in [k for k in headers if k.lower() == name.lower()]:
                        headers[k] = proxy.real(headers[k])
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, resp.getheaders(), data
            finally:
                conn.close()

        def _reply(self, status: int, headers: list[tuple[str, str]] | dict, data: bytes) -> None:
            try:
                self.send_response(status)
                items = headers.items() if isinstance(headers, dict) else headers
                length = None
                for k, v in items:
                    if k.lower() in _HOP:
                        continue
                    if k.lower() == "content-length":
                        length = v
                    self.send_header(k, v)
                if length is None:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                self.wfile.flush()
            except OSError:
                self.close_connection = True  # the client is gone (killed): nothing to do

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    return Handler


def _error_xml(status: int) -> bytes:
    code = {500: "InternalError", 503: "SlowDown"}.get(status, "ServiceUnavailable")
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        f"<Message>injected by the fault proxy</Message></Error>"
    ).encode()
