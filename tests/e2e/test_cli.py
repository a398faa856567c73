"""The `openwa` command line: help, `db upgrade`, `keys create`."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.support import GENERATED_KEY, cli_env, run_cli
from tests.fixtures.server import ServerProcess

pytestmark = pytest.mark.e2e


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    commands = set(re.findall(r"^\W*(\w+)\s{2,}", result.stdout, re.MULTILINE))
    assert {"serve", "keys", "db"} <= commands, result.stdout


def test_db_upgrade_twice_then_a_viewer_key_from_the_cli(
    empty_database_url: str, tmp_path: Path, server_factory: Callable[..., ServerProcess]
) -> None:
    env = cli_env(empty_database_url, tmp_path / "data")
    for _ in range(2):  # the first run migrates; the second finds the schema current
        result = run_cli("db", "upgrade", env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "database is up to date" in result.stdout
        assert "Traceback" not in result.stderr

    server = server_factory()
    server.start()
    with server.client() as admin:
        response = admin.post("/api/sessions", json={"name": "cli-check", "autoStart": False})
        assert response.status_code == 201, response.text

    result = run_cli("keys", "create", "--name", "ci", "--role", "viewer", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    key = result.stdout.strip()
    assert GENERATED_KEY.fullmatch(key), result.stdout

    with server.client(key) as viewer:
        response = viewer.get("/api/sessions")
        assert response.status_code == 200, response.text
        assert [s["name"] for s in response.json()["data"]] == ["cli-check"]
        assert viewer.get("/api/sessions/cli-check").status_code == 200

        response = viewer.post("/api/sessions", json={"name": "not-allowed"})
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "FORBIDDEN"
        assert viewer.post("/api/sessions/cli-check/start").status_code == 403
        assert viewer.get("/api/keys").status_code == 403

    with server.client() as admin:
        response = admin.get("/api/keys", params={"limit": 100})
        assert response.status_code == 200, response.text
        (made,) = [k for k in response.json()["data"] if k["name"] == "ci"]
        assert made["role"] == "viewer"
        assert made["source"] == "api"
        assert key.startswith(made["prefix"])
        assert admin.get("/api/sessions/not-allowed").status_code == 404


def test_keys_create_refuses_an_unknown_role(tmp_path: Path) -> None:
    env = cli_env(f"sqlite+aiosqlite:///{tmp_path / 'openwa.db'}", tmp_path / "data")
    result = run_cli("keys", "create", "--name", "x", "--role", "root", env=env, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert not GENERATED_KEY.search(result.stdout)


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # the same on both
def test_keys_create_with_an_expiry_and_networks(
    database_url: str, tmp_path: Path, server_factory: Callable[..., ServerProcess]
) -> None:
    env = cli_env(database_url, tmp_path / "data")
    result = run_cli(
        "keys", "create", "--name", "limited", "--expires", "2999-01-01T00:00:00Z",
        "--cidr", "10.0.0.0/8", "--cidr", "127.0.0.1/32", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    key = result.stdout.strip()
    server = server_factory()
    server.start()
    with server.client(key) as limited:  # from 127.0.0.1: one of its networks
        assert limited.get("/api/sessions").status_code == 200
    with server.client() as admin:
        listed = admin.get("/api/keys", params={"limit": 100}).json()["data"]
        (made,) = [k for k in listed if k["name"] == "limited"]
        assert made["expiresAt"].startswith("2999-01-01")
        assert made["allowedCidrs"] == ["10.0.0.0/8", "127.0.0.1/32"]


def test_keys_create_refuses_a_bad_network(tmp_path: Path) -> None:
    """The checks of POST /api/keys (the same model): one bad value is refused up front."""
    env = cli_env(f"sqlite+aiosqlite:///{tmp_path / 'openwa.db'}", tmp_path / "data")
    result = run_cli(
        "keys", "create", "--name", "x", "--cidr", "10.0.0.300/8", env=env, cwd=tmp_path
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "allowedCidrs" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not GENERATED_KEY.search(result.stdout)
    assert not (tmp_path / "openwa.db").exists()  # refused before anything was opened
