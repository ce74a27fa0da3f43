"""What the benchmarks share: the database they run on, one core's Ed25519 verify rate, percentiles."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from tests.harness import scratch_pg_schema


@contextlib.contextmanager
def bench_database(kind: str, prefix: str) -> Iterator[str | None]:
    """'postgresql': a fresh schema on the local server, dropped afterwards; 'sqlite': None (the collector's own
    file); anything else is a database URL used as it is."""
    if kind == "postgresql":
        with scratch_pg_schema(prefix) as url:
            yield url
    else:
        yield None if kind == "sqlite" else kind


def verify_rates_one_core(seconds: float = 2.0) -> dict[str, float]:
    """Ed25519 verifications per second on one core, over a signed alert of a typical size, by library: OpenSSL
    (through cryptography) and libsodium (through PyNaCl, which the collector verifies alerts with). The ingest
    goal is measured against the faster: what one core of this machine can verify."""
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from nacl.signing import VerifyKey

    from agent.alerts import make_test_alert

    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key()
    sodium = VerifyKey(public.public_bytes_raw())
    payload = make_test_alert("bullying", 3, "benchmark alert text of a typical length").SerializeToString()
    signature = key.sign(payload)
    rates = {}
    for name, verify in (("openssl", lambda: public.verify(signature, payload)),
                         ("libsodium", lambda: sodium.verify(payload, signature))):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(500):
                verify()
            n += 500
        rates[name] = n / (time.perf_counter() - start)
    return rates


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (nearest rank) of values, or None if there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]
