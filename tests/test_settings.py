import os
import stat

from chat.settings import Settings


def test_secret_key_is_generated_once_and_kept_private(tmp_path):
    key_file = tmp_path / "secret"
    first = Settings.from_env({"CHAT_SECRET_KEY_FILE": str(key_file)})
    second = Settings.from_env({"CHAT_SECRET_KEY_FILE": str(key_file)})
    assert first.secret_key == second.secret_key
    assert len(first.secret_key) >= 40
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


def test_environment_overrides_the_defaults(tmp_path):
    settings = Settings.from_env(
        {
            "CHAT_DATABASE_URL": "postgresql+asyncpg://db/chat",
            "CHAT_BROKER_URL": "redis://127.0.0.1:6379/0",
            "CHAT_SECRET_KEY": "k" * 40,
            "CHAT_LOG_LEVEL": "debug",
        }
    )
    assert settings.database_url == "postgresql+asyncpg://db/chat"
    assert settings.broker_url == "redis://127.0.0.1:6379/0"
    assert settings.secret_key == "k" * 40
    assert settings.log_level == "DEBUG"


def test_defaults_are_the_embedded_backends(tmp_path):
    settings = Settings.from_env({"CHAT_SECRET_KEY": "k" * 40})
    assert settings.database_url == "sqlite+aiosqlite:///./chat.db"
    assert settings.broker_url == "memory://"


def test_secret_key_is_not_in_the_repr():
    assert "hunter2" not in repr(Settings(secret_key="hunter2"))


def test_attachments_go_beside_the_sqlite_file_unless_told_otherwise(tmp_path):
    beside = Settings.from_env(
        {"CHAT_SECRET_KEY": "k" * 40, "CHAT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/c.db"}
    )
    assert beside.media_dir == tmp_path / "media"
    told = Settings.from_env(
        {
            "CHAT_SECRET_KEY": "k" * 40,
            "CHAT_MEDIA_DIR": str(tmp_path / "files"),
            "CHAT_MAX_UPLOAD_BYTES": "1024",
            "CHAT_MAX_FILES_PER_MESSAGE": "2",
        }
    )
    assert (told.media_dir, told.max_upload_bytes, told.max_files_per_message) == (
        tmp_path / "files",
        1024,
        2,
    )
