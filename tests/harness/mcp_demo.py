"""A demo MCP server (the official SDK's FastMCP, Streamable HTTP at `/mcp`) with a few tools,
and `McpServer`, the process running it. `python -m harness.mcp_demo` prints `LISTENING <port>`
once it accepts connections (port 0: any free port)."""
from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys

from harness import paths, procs

# Tools the demo offers; `delete_all` is the one the demo key may not call.
TOOLS = ["add", "echo", "search_docs", "delete_all"]
DEMO_ALLOWED = ["add", "echo", "search_*"]  # = xds.DEMO_MCP_TOOLS
# Prompts and resources the demo offers; `internal_*` ones are for gateways to keep out.
PROMPTS = ["summarize", "internal_playbook"]
RESOURCES = ["docs://public/readme", "docs://public/contact", "docs://internal/keys"]
TEMPLATES = ["docs://public/{name}", "docs://internal/{name}"]


def event_store():
    """An in-memory EventStore: streams carry event ids, and a client that lost one resumes it
    with `Last-Event-ID` (the SDK ships the interface, not a store)."""
    from mcp.server.streamable_http import EventMessage, EventStore

    class Memory(EventStore):
        def __init__(self) -> None:
            self.events: list[tuple[str, str, object]] = []

        async def store_event(self, stream_id, message):
            event_id = str(len(self.events) + 1)
            self.events.append((event_id, stream_id, message))
            return event_id

        async def replay_events_after(self, last_event_id, send_callback):
            ids = [e[0] for e in self.events]
            if last_event_id not in ids:
                return None
            i = ids.index(last_event_id)
            stream = self.events[i][1]
            for event_id, sid, message in self.events[i + 1:]:
                if sid == stream and message is not None:
                    await send_callback(EventMessage(message, event_id))
            return stream

    return Memory()


def build_server():
    from mcp.server.fastmcp import FastMCP
    from mcp.server.transport_security import TransportSecuritySettings

    # Behind the gateway the Host header is the gateway's rewrite; the gateway is the boundary.
    mcp = FastMCP("aimesh-demo", event_store=event_store(), transport_security=TransportSecuritySettings(
        enable_dns_rebinding_protection=False))

    @mcp.tool()
    def add(a: int, b: int) -> int:
        """Adds two integers."""
        return a + b

    @mcp.tool()
    def echo(text: str) -> str:
        """Returns its text."""
        return text

    @mcp.tool()
    def search_docs(query: str, limit: int = 3) -> list[str]:
        """Pretends to search documentation."""
        return [f"{query} result {i}" for i in range(limit)]

    @mcp.tool()
    def delete_all() -> str:
        """Something a gateway should keep most callers away from."""
        return "everything deleted"

    @mcp.prompt()
    def summarize(text: str) -> str:
        """A prompt."""
        return f"Summarize: {text}"

    @mcp.prompt()
    def internal_playbook() -> str:
        """A prompt only operators should see."""
        return "the internal incident playbook"

    @mcp.resource("docs://public/readme")
    def readme() -> str:
        return "public readme"

    @mcp.resource("docs://public/contact")
    def contact() -> str:
        return "write to jane@example.com"

    @mcp.resource("docs://internal/keys")
    def keys() -> str:
        return "internal signing keys"

    @mcp.resource("docs://public/{name}")
    def public_doc(name: str) -> str:
        return f"public {name}"

    @mcp.resource("docs://internal/{name}")
    def internal_doc(name: str) -> str:
        return f"internal {name}"

    return mcp


class TraceRecorder:
    """ASGI wrapper: keeps the `traceparent` of every request, served as JSON at
    `GET /debug/traceparents` (not through the gateway: tests read what the server received)."""

    def __init__(self, app) -> None:
        self.app = app
        self.seen: list[str] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            if scope["path"] == "/debug/traceparents":
                body = json.dumps(self.seen).encode()
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})
                return
            tp = dict(scope["headers"]).get(b"traceparent")
            if tp:
                self.seen.append(tp.decode())
        await self.app(scope, receive, send)


def serve(port: int) -> None:
    import uvicorn

    app = TraceRecorder(build_server().streamable_http_app())
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    print(f"LISTENING {sock.getsockname()[1]}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    server.run(sockets=[sock])


class McpServer(procs._Proc):
    """The demo FastMCP server; `url` is its MCP endpoint."""

    name = "mcp-demo"

    def __init__(self, port: int = 0) -> None:
        super().__init__()
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "harness.mcp_demo", "--port", str(port)],
                                     cwd=paths.REPO / "tests", stdout=subprocess.PIPE, stderr=log,
                                     start_new_session=True)
        procs._LIVE.append(self)
        line = self.proc.stdout.readline().decode() if self.proc.stdout else ""
        if not line.startswith("LISTENING "):
            self.stop()
            raise RuntimeError(f"mcp demo server did not start: {line!r} {self.log()}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}/mcp"

    def traceparents(self) -> list[str]:
        """The `traceparent` headers the server received, oldest first."""
        import requests
        return requests.get(f"http://127.0.0.1:{self.port}/debug/traceparents", timeout=5).json()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    serve(ap.parse_args().port)
