"""Every route of the HTTP app, fuzzed from its own OpenAPI schema (schemathesis): never a 5xx,
only the statuses the schema documents, and error bodies in the documented shapes.

Bodies and parameters both valid by the schema and invalid (wrong types, missing fields, bytes
that are not JSON) go to a real Serve deployment (tiny backbone, SQLite store). Generation is
derandomized, so a run sends the same requests every time; the bad requests other tests name one
by one stay in ``test_serve.py`` and ``test_serve_state.py``.
"""

from __future__ import annotations

import pytest
from test_serve import LIMITS, assert_error_shape, free_port, tiny_index

from coldrec.serve.app import AppArgs, build_app

APP = "coldrec-fuzz-test"
EXAMPLES = 15  # per route and mode: about 210 requests, 10-15 s on 2 cores


@pytest.fixture(scope="module")
def served(ray_session, tiny_backbone, tmp_path_factory):
    import httpx
    from ray import serve

    index_dir = tiny_index(tmp_path_factory.mktemp("fuzz-index"), tiny_backbone)
    store = str(tmp_path_factory.mktemp("fuzz-store") / "coldrec.sqlite")
    args = AppArgs(index_dir=str(index_dir), candidates=8, num_cpus_per_replica=0.25, store=store, **LIMITS)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(args), name=APP, route_prefix="/")
    base = f"http://127.0.0.1:{port}"
    spec = httpx.get(base + "/openapi.json", timeout=60).json()
    yield base, spec
    serve.delete(APP)
    serve.shutdown()


def _operations(spec: dict):
    import schemathesis

    return [result.ok() for result in schemathesis.openapi.from_dict(spec).get_all_operations()]


def test_every_route_answers_fuzzed_requests_as_documented(served):
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    base, spec = served
    statuses: dict[tuple[str, str], set[int]] = {}
    for operation in _operations(spec):
        route = (operation.method.lower(), operation.path)
        documented = {int(code) for code in spec["paths"][operation.path][route[0]]["responses"]}
        seen = statuses.setdefault(route, set())
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))  # fmt: skip
            @given(case=operation.as_strategy(mode))
            def answers_as_documented(case):
                reply = case.call(base_url=base, timeout=60)
                seen.add(reply.status_code)
                request = case.as_curl_command(base_url=base)
                assert reply.status_code < 500, (request, reply.text)
                assert reply.status_code in documented, (request, reply.status_code, reply.text)
                if reply.status_code >= 400:
                    assert_error_shape(reply)

            try:
                answers_as_documented()
            except Unsatisfiable:  # no parameters and no body: nothing can be made invalid
                assert mode is GenerationMode.NEGATIVE and route in {("get", "/healthz"), ("get", "/readyz")}
    # The fuzzer reached past validation: some requests were answered with results.
    assert 201 in statuses[("post", "/items")] and 200 in statuses[("get", "/healthz")]
    assert all(any(s >= 400 for s in seen) for route, seen in statuses.items() if route[1] not in ("/healthz", "/readyz"))
