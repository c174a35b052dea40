"""A real OTLP/gRPC trace receiver (the official `opentelemetry-proto` messages over grpcio):
it collects every span Envoy exports, with its attributes decoded to Python values."""
from __future__ import annotations

import threading
import time
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


def _value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


class _Service(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: "Receiver") -> None:
        self.receiver = receiver

    def Export(self, request, context):  # noqa: N802 (gRPC method name)
        for rs in request.resource_spans:
            resource = {a.key: _value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    span = {"name": s.name, "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                            "parent_span_id": s.parent_span_id.hex(),
                            "resource": resource,
                            "attributes": {a.key: _value(a.value) for a in s.attributes}}
                    with self.receiver.lock:
                        self.receiver.spans.append(span)
        return trace_service_pb2.ExportTraceServiceResponse()


class Receiver:
    """Listens on 127.0.0.1, a free port (`port`); `stop()` when done."""

    def __init__(self) -> None:
        self.spans: list[dict] = []
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Service(self), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_spans(self, predicate, deadline_s: float = 15.0) -> list[dict]:
        """Spans received so far once `predicate(spans)` holds (Envoy batches its exports)."""
        deadline = time.time() + deadline_s
        while time.time() < deadline:
            with self.lock:
                spans = list(self.spans)
            if predicate(spans):
                return spans
            time.sleep(0.05)
        raise AssertionError(f"no matching spans after {deadline_s}s: {self.spans}")

    def stop(self) -> None:
        self.server.stop(grace=None)
