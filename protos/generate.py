"""Regenerate the protobuf and gRPC modules from protos/*.proto (`make protos`).

The output is committed, so a fresh clone needs no protoc; tests/test_protos.py fails if it drifts from the
.proto files. grpcio-tools is pinned in pyproject.toml so that the output is reproducible.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def generate(out_dir: Path = ROOT) -> list[Path]:
    """Run protoc (from grpcio-tools) over every .proto in protos/, writing below ``out_dir``."""
    from grpc_tools import protoc

    protos = sorted((ROOT / "protos").glob("*.proto"))
    well_known = str(resources.files("grpc_tools") / "_proto")
    args = [
        "protoc",
        f"-I{ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p.relative_to(ROOT)) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted((out_dir / "protos").glob("*_pb2*.py*"))


if __name__ == "__main__":
    for path in generate():
        print(path.relative_to(ROOT))
    sys.exit(0)
