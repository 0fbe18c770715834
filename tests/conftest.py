"""Shared fixtures: where the real data lives, and hashing a run's output."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.io import iter_parquet

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data`; skipped where absent, a failure under LLAMIX_REQUIRE_SHARED=1."""
    if not SHARED_DATA.is_dir():
        reason = f"real sample data not found at {SHARED_DATA} (clone beside ../shared)"
        if os.environ.get("LLAMIX_REQUIRE_SHARED") == "1":
            pytest.fail(f"LLAMIX_REQUIRE_SHARED=1 but {reason}")
        pytest.skip(reason)
    return SHARED_DATA


def output_digest(step_dir: Path) -> str:
    """A content hash of every document a step wrote, in id order."""
    docs = sorted(
        (
            doc
            for part in sorted(step_dir.glob("part-*.parquet"))
            for doc in iter_parquet(str(part))
        ),
        key=lambda d: d.id,
    )
    h = hashlib.sha256()
    for doc in docs:
        h.update(repr((doc.id, doc.text, doc.source, sorted(doc.meta.items()))).encode())
    return h.hexdigest()


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One embedded loopback Ray for the in-process engine tests."""
    import ray

    from pipeline.executor import connect

    connect(None, 2)
    yield
    ray.shutdown()
