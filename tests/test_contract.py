"""The contract: generated code matches the .proto, the enrolment string round-trips, the packages stay apart."""

import ast
import filecmp
import tomllib
from pathlib import Path

import pytest

from protos.enrolment import EnrolmentString, EnrolmentStringError
from protos.generate import generate

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_is_reproducible_from_the_proto(tmp_path):
    generate(tmp_path)
    for name in ("wardwatch_pb2.py", "wardwatch_pb2.pyi", "wardwatch_pb2_grpc.py"):
        assert filecmp.cmp(tmp_path / "protos" / name, ROOT / "protos" / name, shallow=False), \
            f"protos/{name} is stale: run 'make protos' and commit"


def test_enrolment_string_round_trips_and_rejects_damage():
    es = EnrolmentString("school.example:50051", "school.example:50052", "abcd.secret", "f" * 64, "Main")
    assert EnrolmentString.decode(es.encode()) == es
    with pytest.raises(EnrolmentStringError, match=r"cut short|damaged"):
        EnrolmentString.decode(es.encode()[:-7])
    with pytest.raises(EnrolmentStringError, match="not a WardWatch"):
        EnrolmentString.decode("hello")


def _imports(package: str) -> set[tuple[str, str]]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {(str(path.relative_to(ROOT)), a.name.split(".")[0]) for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add((str(path.relative_to(ROOT)), node.module.split(".")[0]))
    return found


def test_agent_and_collector_never_import_each_other():
    assert [f for f, m in _imports("agent") if m == "collector"] == []
    assert [f for f, m in _imports("collector") if m == "agent"] == []


def test_agent_install_pulls_no_web_or_database_stack():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    agent_deps = project["dependencies"] + project["optional-dependencies"]["agent"]
    names = {d.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
             for d in agent_deps}
    heavy = {"sqlalchemy", "alembic", "psycopg", "fastapi", "starlette", "uvicorn", "jinja2", "argon2-cffi"}
    assert names & heavy == set()


def test_agent_code_imports_nothing_from_the_web_or_database_stack():
    heavy = {"sqlalchemy", "alembic", "psycopg", "fastapi", "starlette", "uvicorn", "jinja2", "argon2"}
    assert sorted(f for f, m in _imports("agent") | _imports("signatures") if m in heavy) == []
