"""A client generated from /openapi.json by openapi-python-client keeps every model and
route, and works against the server: the document is exact enough to build on."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest

from openwa.app import create_app
from tests.fixtures.app import ADMIN_KEY, Api, make_settings, wait_for

PACKAGE = "openwa_generated_client"


def generate(document: dict[str, Any], folder: Path) -> str:
    """Run the generator; its output (warnings name every model or route it dropped)."""
    spec = folder / "openapi.json"
    spec.write_bytes(orjson.dumps(document))
    config = folder / "config.yaml"
    config.write_text(f"package_name_override: {PACKAGE}\npost_hooks: []\n")
    generator = Path(sys.executable).with_name("openapi-python-client")
    done = subprocess.run(
        [
            str(generator),
            "generate",
            "--path",
            str(spec),
            "--meta",
            "none",
            "--config",
            str(config),
            "--output-path",
            str(folder / PACKAGE),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What GET /openapi.json serves (the app's own `openapi()`)."""
    data = tmp_path_factory.mktemp("data")
    app = create_app(make_settings(f"sqlite+aiosqlite:///{data}/openwa.db", data))
    return app.openapi()


@pytest.fixture(scope="module")
def client_package(
    document: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModuleType]:
    folder = tmp_path_factory.mktemp("client")
    output = generate(document, folder)
    assert "warning" not in output.lower(), output
    assert "Unable to" not in output, output
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [n for n in sys.modules if n.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def test_every_model_and_route_is_generated(
    client_package: ModuleType, document: dict[str, Any]
) -> None:
    """The generator warns of every schema or route it drops (the fixture asserts none);
    here the ones it used to drop, and a module per operation."""
    models = importlib.import_module(f"{PACKAGE}.models")
    for name in (
        "Session",
        "SessionConfig",
        "SessionConfigView",
        "SessionCreated",
        "EnvelopeSession",
        "PageEnvelopeSession",
        "MediaMessageCreate",
        "MediaUpload",
        "ErrorEnvelope",
    ):
        assert hasattr(models, name), name
    for item in document["paths"].values():
        for operation in item.values():
            tag = operation["tags"][0].replace(" ", "_")
            importlib.import_module(f"{PACKAGE}.api.{tag}.{operation['operationId']}")


async def test_the_generated_client_drives_the_server(client_package: ModuleType, api: Api) -> None:
    models = importlib.import_module(f"{PACKAGE}.models")
    sessions = importlib.import_module(f"{PACKAGE}.api.sessions")
    client = client_package.Client(base_url="http://openwa.test")
    api.http.headers["X-API-Key"] = ADMIN_KEY
    client.set_async_httpx_client(api.http)

    create = importlib.import_module(f"{sessions.__name__}.create_session")
    created = await create.asyncio_detailed(
        client=client, body=models.SessionCreate(name="generated", engine="mock")
    )
    assert created.status_code == 201, created.content
    assert isinstance(created.parsed, models.EnvelopeSessionCreated)
    session_id = created.parsed.data.id

    get = importlib.import_module(f"{sessions.__name__}.get_session")

    async def fetch() -> Any:
        answer = await get.asyncio(client=client, id=session_id)
        assert isinstance(answer, models.EnvelopeSession), answer
        return answer.data

    session = await wait_for(fetch, lambda s: s.status == models.Status.READY, 10, "ready")
    assert isinstance(session, models.Session)
    assert isinstance(session.config, models.SessionConfigView)
    assert session.name == "generated"

    send = importlib.import_module(f"{PACKAGE}.api.messages.send_text")
    sent = await send.asyncio_detailed(
        client=client,
        id=session_id,
        body=models.TextMessageCreate(chat_id="+62 812-3456-7890", text="hello"),
    )
    assert sent.status_code == 202, sent.content
    assert isinstance(sent.parsed, models.EnvelopeMessage)
    message = sent.parsed.data
    assert message.chat_id == "6281234567890@s.whatsapp.net"

    history = importlib.import_module(f"{PACKAGE}.api.chats.chat_messages")
    page = await history.asyncio(client=client, id=session_id, chat_id=message.chat_id)
    assert isinstance(page, models.PageEnvelopeMessage), page
    assert [m.id for m in page.data] == [message.id]
    assert page.pagination.total == 1

    missing = await get.asyncio_detailed(client=client, id="nobody")
    assert missing.status_code == 404
    assert isinstance(missing.parsed, models.ErrorEnvelope)
    assert missing.parsed.error.code == "SESSION_NOT_FOUND"
