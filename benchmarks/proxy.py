"""A counting reverse proxy in front of the Prefect API, in its own process.

Prefect 3 reports task runs as *events over a websocket* (`/api/events/in`), not as
HTTP calls, so counting the server's HTTP access log would miss most of the
traffic a task causes. This proxy relays both HTTP and websockets and counts:
  - HTTP requests by channel, method and path (ids replaced by `{id}`),
  - websocket messages sent upstream, by the `event` name they carry,
  - log records inside `POST /logs/` batches,
and, apart (`GET /__waited`), the seconds each kind of HTTP call waited for the
server and the answers of 500 and above: where a slow burst's time goes.
Channels are URL prefixes (`/<channel>/api/...`), so one proxy tells the worker's
calls apart from the flow runs' calls. `GET /__counts` returns the counters.

Run: python -m benchmarks.proxy --port P --upstream http://127.0.0.1:S
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import time
from collections import Counter
from typing import Any

import httpx
import uvicorn
import websockets
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Hop-by-hop headers must not be forwarded; length/encoding are recomputed.
_DROP = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}

counts: Counter[str] = Counter()
waited: Counter[str] = Counter()
upstream = ""
client: httpx.AsyncClient | None = None


def _template(path: str) -> str:
    return _ID.sub("{id}", path)


async def counts_endpoint(request: Request) -> Response:
    return JSONResponse(dict(counts))


async def waited_endpoint(request: Request) -> Response:
    return JSONResponse(dict(waited))


async def forward(request: Request) -> Response:
    channel, path = request.path_params["channel"], request.path_params["path"]
    body = await request.body()
    key = f"{channel} http {request.method} /{_template(path)}"
    counts[key] += 1
    if path.rstrip("/").endswith("logs") and request.method == "POST":
        with contextlib.suppress(ValueError):
            counts[f"{channel} log-records"] += len(json.loads(body))
    assert client is not None
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP}
    sent = time.monotonic()
    resp = await client.request(
        request.method,
        f"{upstream}/{path}",
        params=request.query_params,
        content=body,
        headers=headers,
    )
    waited[key] += time.monotonic() - sent
    if resp.status_code >= 500:
        waited[f"{key} {resp.status_code}"] += 1
    out = {k: v for k, v in resp.headers.items() if k.lower() not in _DROP}
    return Response(resp.content, status_code=resp.status_code, headers=out)


def _event_name(message: str) -> str:
    try:
        data: Any = json.loads(message)
    except ValueError:
        return "?"
    if isinstance(data, dict):
        return str(data.get("event") or data.get("type") or "?")
    return "?"


async def relay_ws(ws: WebSocket) -> None:
    channel, path = ws.path_params["channel"], ws.path_params["path"]
    target = upstream.replace("http://", "ws://", 1) + "/" + path
    protocols = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",")]
    protocols = [p for p in protocols if p]
    # No timeouts of the proxy's own on requests or handshakes, here or below: the
    # caller's apply, as on a direct connection. (With 60 s upstream and websockets'
    # 10 s handshake, a starved server's slow answer became the proxy's 500, which
    # Prefect's client does not retry where its own read timeout would have asked
    # again: flow runs crashed that no user's would.)
    async with websockets.connect(
        target, subprotocols=protocols or None, max_size=None, open_timeout=None
    ) as up:
        await ws.accept(subprotocol=up.subprotocol)
        counts[f"{channel} ws-connect /{path}"] += 1

        async def downstream() -> None:
            async for message in up:
                await ws.send_text(message if isinstance(message, str) else message.decode())

        down = asyncio.create_task(downstream())
        try:
            while True:
                message = await ws.receive_text()
                counts[f"{channel} ws /{path} {_event_name(message)}"] += 1
                await up.send(message)
        except WebSocketDisconnect:
            pass
        finally:
            down.cancel()


def app() -> Starlette:
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    return Starlette(
        routes=[
            Route("/__counts", counts_endpoint),
            Route("/__waited", waited_endpoint),
            Route("/{channel}/{path:path}", forward, methods=methods),
            WebSocketRoute("/{channel}/{path:path}", relay_ws),
        ]
    )


async def _serve(port: int) -> None:
    global client
    client = httpx.AsyncClient(timeout=None, limits=httpx.Limits(max_connections=None))
    config = uvicorn.Config(
        app(), host="127.0.0.1", port=port, log_level="warning", ws="websockets"
    )
    await uvicorn.Server(config).serve()


def main() -> None:
    global upstream
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the server root, e.g. http://h:p")
    args = parser.parse_args()
    upstream = args.upstream.rstrip("/")
    asyncio.run(_serve(args.port))


if __name__ == "__main__":
    main()
