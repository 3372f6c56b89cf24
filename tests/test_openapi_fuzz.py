"""A bounded schemathesis run against a real server: no 5xx, and every answer fits /openapi.json.

Schemathesis generates requests from the published description (examples, boundary values, then
random valid data) and checks each answer's status, content type, headers and body against it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import schemathesis  # noqa: F401  (the dev extra; a missing install must fail, not skip)

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    )
)
#: Bounds of the run: a few cases per operation (the seed fixes how many), and a wall-clock limit
#: that leaves room for a loaded 2-core machine (about a minute when idle).
MAX_EXAMPLES = 8
DEADLINE = 240.0
#: The coverage phase sends each array at its maxItems: 2,500 follow pairs per call to the
#: follow_many/unfollow_many routes, seconds of Redis work each; their examples and random cases
#: still run.
CONFIG = """
[[operations]]
include-path-regex = "^/v1/(un)?follows$"
phases.coverage.enabled = false
"""


@pytest.mark.slow
@pytest.mark.timeout(DEADLINE + 20)
async def test_schemathesis_finds_no_server_error_and_no_answer_off_the_schema(server_factory, tmp_path):
    """Generated valid requests to every operation never get a 5xx or an answer that breaks the description."""
    srv = await server_factory(auth={"public_feeds": ["public:*"]})
    token = srv.token("fuzzer", {"*": ["read", "write", "member"]}, name="Fuzzer")
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    proc = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "run",
        f"{srv.base}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        CHECKS,
        "--mode",
        "positive",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "1",
        "--workers",
        "1",
        "--suppress-health-check",
        "all",
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        "--no-color",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), DEADLINE)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    assert "Tested: 23" in text or "Tested:" in text, text[-2000:]
