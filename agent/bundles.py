"""The keyword bundle the agent runs: kept in `<state>/bundle/`, replaced only by one whose signature verifies."""

from __future__ import annotations

import json
import os
from pathlib import Path

from agent.state import AgentState

CURRENT = "current.wwb"
SIGNATURE = "current.sig"
META = "current.json"


class BundleStore:
    def __init__(self, state: AgentState):
        self.dir: Path = state.bundle_dir

    @property
    def bundle_path(self) -> Path:
        return self.dir / CURRENT

    @property
    def signature_path(self) -> Path:
        return self.dir / SIGNATURE

    def current_version(self) -> str:
        try:
            return json.loads((self.dir / META).read_text())["version"]
        except (OSError, ValueError, KeyError):
            return ""

    def install(self, version: str, bundle: bytes, signature: bytes, public_key_der: bytes) -> tuple[bool, str]:
        """Verify, then swap in atomically. A bundle that does not verify is refused; the old one stays."""
        from cryptography.hazmat.primitives.serialization import load_der_public_key
        from signatures.bundle import BundleError, verify_bundle

        try:
            verify_bundle(bundle, signature, load_der_public_key(public_key_der))
        except (BundleError, ValueError) as exc:
            return False, f"bundle {version} refused: {exc}"
        self.dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        for name, data in ((SIGNATURE + ".new", signature), (CURRENT + ".new", bundle),
                           (META + ".new", json.dumps({"version": version}).encode())):
            path = self.dir / name
            path.write_bytes(data)
            os.chmod(path, 0o644)  # session helpers read it; it holds no secret
        # Signature first, bundle second, version last: a reader that sees the new version sees a whole bundle.
        for name in (SIGNATURE, CURRENT, META):
            (self.dir / (name + ".new")).replace(self.dir / name)
        return True, f"installed bundle {version}"
