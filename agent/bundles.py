"""The keyword bundle the agent runs: kept in `<state>/bundle/`, replaced only by one whose signature verifies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
        self.dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        staged = {name: self.dir / (name + ".new") for name in (SIGNATURE, CURRENT, META)}
        meta = json.dumps({"version": version}).encode()
        for name, data in ((SIGNATURE, signature), (CURRENT, bundle), (META, meta)):
            staged[name].write_bytes(data)
            os.chmod(staged[name], 0o644)  # session helpers read it; it holds no secret
        problem = check_bundle(staged[CURRENT], staged[SIGNATURE], public_key_der)
        if problem:
            for path in staged.values():
                path.unlink(missing_ok=True)
            return False, f"bundle {version} refused: {problem}"
        # Signature first, bundle second, version last: a reader that sees the new version sees a whole bundle.
        for name in (SIGNATURE, CURRENT, META):
            staged[name].replace(self.dir / name)
        return True, f"installed bundle {version}"


def check_bundle(bundle_path: Path, signature_path: Path, public_key_der: bytes) -> str:
    """Why the bundle must not be used ("" if it verifies and parses), decided in a short-lived child process.

    Checking means parsing and validating every rule, which leaves the service ~3 MB larger for as long as it runs
    (the heap does not shrink back); the child takes that memory away with it. A bundle arrives once a term or so."""
    if getattr(sys, "frozen", False):  # a PyInstaller build (Windows): its executable is the agent, not Python
        return _problem(bundle_path.read_bytes(), signature_path.read_bytes(), public_key_der)
    try:
        child = subprocess.run([sys.executable, "-m", "agent.bundles", str(bundle_path), str(signature_path)],
                               input=public_key_der.hex(), capture_output=True, text=True, timeout=120)
    except OSError:  # the interpreter cannot be started (a locked-down host): check in this process instead
        return _problem(bundle_path.read_bytes(), signature_path.read_bytes(), public_key_der)
    except subprocess.TimeoutExpired:
        return "the bundle check did not finish in time"
    if child.returncode == 0:
        return ""
    return (child.stderr.strip().splitlines() or [f"the bundle check failed (exit {child.returncode})"])[-1]


def _problem(bundle: bytes, signature: bytes, public_key_der: bytes) -> str:
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    from signatures.bundle import BundleError, verify_bundle

    try:
        verify_bundle(bundle, signature, load_der_public_key(public_key_der))
    except (BundleError, ValueError) as exc:
        return str(exc)
    return ""


def main(argv: list[str]) -> int:
    """`python -m agent.bundles BUNDLE SIGNATURE` with the bundle key (DER, hex) on stdin: exit 0 if the bundle
    verifies and parses, else 2 with the reason on stderr's last line."""
    bundle_path, signature_path = (Path(a) for a in argv)
    problem = _problem(bundle_path.read_bytes(), signature_path.read_bytes(), bytes.fromhex(sys.stdin.read().strip()))
    if problem:
        print(problem, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
