"""A setting given empty (`STORAGE_PATH=` in a `.env` file, as templates leave them)
means "not set": its default, not an empty value. `STORAGE_PATH=` used to put every
stored file in the working directory (`Path("")`), and `LOG_FORMAT=` or
`SEND_INTERVAL_MAX_MS=` stopped the server from starting."""

from __future__ import annotations

from pathlib import Path

from openwa.config import Settings


def test_an_empty_setting_takes_its_default(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "\n".join(
            f"{name}="
            for name in (
                "STORAGE_PATH",
                "NODE_BRIDGE_DIR",
                "WEBJS_WORKER_MAX_MB",
                "SEND_INTERVAL_MAX_MS",
                "LOG_FORMAT",
                "API_KEY",
                "S3_BUCKET",
                "FFMPEG_PATH",
            )
        )
        + f"\nDATA_DIR={tmp_path / 'data'}\n"
    )
    settings = Settings(_env_file=dotenv)  # type: ignore[call-arg]
    assert settings.resolved_storage_path == tmp_path / "data" / "media"
    assert settings.resolved_node_bridge_dir == tmp_path / "data" / "engines" / "node"
    assert settings.webjs_worker_max_mb is None
    assert settings.send_interval_max_ms is None
    assert settings.log_format is None
    assert settings.api_key is None
    assert settings.s3_bucket is None
    assert settings.ffmpeg_path is None
