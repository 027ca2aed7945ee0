"""`chat serve | db upgrade | create-user | admin | export | import | backup | restore |
seed | bench`.

`seed` and `bench` belong to the benchmark package beside this one (bench/), imported
only when one of them is asked for."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from pathlib import Path

from chat.settings import Settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str):  # -> alembic.config.Config
    from alembic.config import Config

    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_database(database_url: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(database_url), "head")


# Open files wanted: two streams per person of a 20,000-person crowd, and the rest.
WANTED_OPEN_FILES = 65_536


def raise_fd_limit() -> int:
    """Lift the open-files limit to its hard limit (every open stream is a socket), or,
    where the process may (root, CAP_SYS_RESOURCE), to `WANTED_OPEN_FILES` if the hard
    limit is lower; returns the limit now in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < WANTED_OPEN_FILES:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (WANTED_OPEN_FILES, WANTED_OPEN_FILES))
            return WANTED_OPEN_FILES
        except (ValueError, OSError):  # not allowed: the hard limit it is
            pass
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# How `chat serve` runs uvicorn, besides where it listens. The fan-out path depends on
# the httptools protocol (chat.stream_connection.DirectWrite); tests/test_stream_serving.py serves
# the app with these same options and fails if it no longer takes that path.
UVICORN_OPTIONS: dict[str, object] = {
    "loop": "uvloop",
    "http": "httptools",
    "access_log": False,  # chat.logging writes one structured line per request
    # Forwarded headers are believed only from CHAT_TRUSTED_PROXIES, by the app itself
    # (chat.http_guards): uvicorn's own check trusts 127.0.0.1 unless told otherwise.
    "proxy_headers": False,
    # No "server: uvicorn": the response says nothing about the stack.
    "server_header": False,
    "timeout_graceful_shutdown": 5,
}


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    raise_fd_limit()
    settings = Settings.from_env()
    if args.workers > 1 and settings.broker_url.startswith("memory://"):
        print(
            "chat serve: --workers > 1 needs a shared broker (CHAT_BROKER_URL=redis://...): "
            "with memory:// a message posted to one worker never reaches the others.",
            file=sys.stderr,
        )
        return 2
    uvicorn.run(
        "chat.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        **UVICORN_OPTIONS,
    )
    return 0


async def _create_user(username: str, password: str, is_admin: bool) -> bool:
    from chat.auth import hash_password
    from chat.db import create_engine, create_sessionmaker
    from chat.models import AdminEvent, User

    engine = create_engine(Settings.from_env().database_url)
    try:
        async with create_sessionmaker(engine)() as db:
            password_hash = await hash_password(password)
            user = await User.create(db, username, password_hash, is_admin=is_admin)
            if user is not None and is_admin:
                await AdminEvent.record(db, None, "admin_granted", f"user {username}", "created")
            return user is not None
    finally:
        await engine.dispose()


async def _set_admin(username: str, is_admin: bool) -> str | None:
    """Make `username` an administrator or not; what went wrong, or None."""
    import structlog

    from chat.db import create_engine, create_sessionmaker
    from chat.models import AdminEvent, User

    engine = create_engine(Settings.from_env().database_url)
    try:
        async with create_sessionmaker(engine)() as db:
            user = await User.by_username(db, username)
            if user is None:
                return f"there is no user called {username!r}."
            if user.is_admin != is_admin:
                await user.set_admin(db, is_admin)
                action = "admin_granted" if is_admin else "admin_revoked"
                await AdminEvent.record(db, None, action, f"user {user.username}")
                structlog.get_logger("chat.admin").info(
                    f"admin.{action}", admin_id=None, target=f"user {user.username}"
                )
            return None
    finally:
        await engine.dispose()


def admin(args: argparse.Namespace) -> int:
    problem = asyncio.run(_set_admin(args.username, args.action == "grant"))
    if problem:
        print(f"chat admin: {problem}", file=sys.stderr)
        return 1
    verb = "is now" if args.action == "grant" else "is no longer"
    print(f"{args.username} {verb} an administrator")
    return 0


def create_user(args: argparse.Namespace) -> int:
    from chat.passwords import password_problem
    from chat.routes.sessions import USERNAME

    if not USERNAME.fullmatch(args.username):
        print("chat create-user: usernames are 3 to 32 letters, digits, _ or -.", file=sys.stderr)
        return 2
    password = getpass.getpass("Password: ") if sys.stdin.isatty() else sys.stdin.readline()
    password = password.rstrip("\n")
    if problem := password_problem(password, args.username):
        print(f"chat create-user: {problem}", file=sys.stderr)
        return 2
    if not asyncio.run(_create_user(args.username, password, args.admin)):
        print(f"chat create-user: {args.username!r} is taken.", file=sys.stderr)
        return 1
    print(f"created {args.username}" + (" (an administrator)" if args.admin else ""))
    return 0


async def _create_bot(name: str, owner_name: str | None) -> str:
    from chat.db import create_engine, create_sessionmaker
    from chat.models import Bot, User

    engine = create_engine(Settings.from_env().database_url)
    try:
        async with create_sessionmaker(engine)() as db:
            owner = None
            if owner_name is not None:
                owner = await User.by_username(db, owner_name)
                if owner is None:
                    return f"there is no user {owner_name!r}."
            if await Bot.create(db, name, owner) is None:
                return f"{name!r} is taken."
            return ""
    finally:
        await engine.dispose()


def create_bot(args: argparse.Namespace) -> int:
    from chat.routes.sessions import USERNAME

    if not USERNAME.fullmatch(args.name):
        print("chat create-bot: names are 3 to 32 letters, digits, _ or -.", file=sys.stderr)
        return 2
    if problem := asyncio.run(_create_bot(args.name, args.owner)):
        print(f"chat create-bot: {problem}", file=sys.stderr)
        return 1
    print(f"created bot {args.name}")
    return 0


async def _create_token(args: argparse.Namespace) -> tuple[str, str]:
    """(the token's secret, "") or ("", what went wrong)."""
    from chat.db import create_engine, create_sessionmaker
    from chat.models import ApiToken, Room, User

    engine = create_engine(Settings.from_env().database_url)
    try:
        async with create_sessionmaker(engine)() as db:
            user = await User.by_username(db, args.username)
            if user is None:
                return "", f"there is no user {args.username!r}."
            rooms = {room.id for room, _ in await Room.of_member(db, user)}
            if outside := sorted(set(args.room) - rooms):
                return "", f"{args.username} is not in room(s) {outside}."
            _, secret = await ApiToken.issue(
                db, user, args.name, may_write=args.write, room_ids=args.room
            )
            return secret, ""
    finally:
        await engine.dispose()


def create_token(args: argparse.Namespace) -> int:
    from chat.models.tokens import MAX_TOKEN_NAME

    if not args.name.strip() or len(args.name) > MAX_TOKEN_NAME:
        print(f"chat create-token: --name is 1 to {MAX_TOKEN_NAME} characters.", file=sys.stderr)
        return 2
    secret, problem = asyncio.run(_create_token(args))
    if problem:
        print(f"chat create-token: {problem}", file=sys.stderr)
        return 1
    print(secret)  # the only time it is shown
    return 0


def _progress(command: str, done: int, total: int) -> None:
    """A progress bar on stderr, redrawn in place: `[#####.....]  52%  520,000 of 1,000,000`."""
    share = done / total if total else 1.0
    bar = "#" * int(share * 30)
    print(
        f"\rchat {command}: [{bar:<30}] {share:4.0%}  {done:,} of {total:,} rows",
        end="",
        file=sys.stderr,
        flush=True,
    )


async def _export(room_id: int | None, output) -> int:
    from chat.db import create_engine
    from chat.export import count_rows, export_lines

    engine = create_engine(Settings.from_env().database_url)
    count = 0
    # One transaction: on PostgreSQL a snapshot of one moment while the server writes
    # on (SQLite's read transaction is one already), and its cursors need one.
    snapshot = {} if engine.dialect.name == "sqlite" else {"isolation_level": "REPEATABLE READ"}
    try:
        async with engine.execution_options(**snapshot).connect() as connection:
            await connection.begin()
            total = await count_rows(connection, room_id)
            async for line in export_lines(connection, room_id):
                output.write(line + "\n")
                count += 1
                if count % 10_000 == 0:
                    _progress("export", count, total)
    finally:
        await engine.dispose()
    print(f"\nchat export: {count - 1:,} rows written", file=sys.stderr)
    return 0


def export(args: argparse.Namespace) -> int:
    if args.output in (None, "-"):
        return asyncio.run(_export(args.room, sys.stdout))
    with open(args.output, "w", encoding="utf-8", newline="\n") as output:
        return asyncio.run(_export(args.room, output))


async def _import(lines) -> int:
    from chat.db import create_engine
    from chat.export import NotAnExport, import_lines, is_empty

    engine = create_engine(Settings.from_env().database_url)
    # A transaction (PostgreSQL's connections otherwise rest in autocommit): a bad line
    # rolls every row back.
    transaction = {} if engine.dialect.name == "sqlite" else {"isolation_level": "READ COMMITTED"}
    try:
        async with engine.execution_options(**transaction).begin() as connection:
            if not await is_empty(connection):
                print(
                    "chat import: the database is not empty; import into a new one"
                    " (made by chat db upgrade).",
                    file=sys.stderr,
                )
                return 1
            try:
                count = await import_lines(
                    connection,
                    lines,
                    lambda n: print(
                        f"\rchat import: {n:,} rows", end="", file=sys.stderr, flush=True
                    ),
                )
            except NotAnExport as exc:
                print(f"\nchat import: nothing imported: {exc}", file=sys.stderr)
                await connection.rollback()
                return 1
    finally:
        await engine.dispose()
    print(f"\rchat import: {count:,} rows imported", file=sys.stderr)
    return 0


def import_(args: argparse.Namespace) -> int:
    if args.input in (None, "-"):
        return asyncio.run(_import(line.rstrip("\n") for line in sys.stdin))
    with open(args.input, encoding="utf-8") as lines:
        return asyncio.run(_import(line.rstrip("\n") for line in lines))


def backup_command(args: argparse.Namespace) -> int:
    from chat.backup import BackupRefused, backup, restore

    settings = Settings.from_env()
    try:
        if args.command == "backup":
            backup(settings, Path(args.path), print)
        else:
            restore(settings, Path(args.path), print, args.replace)
    except BackupRefused as exc:
        print(f"chat {args.command}: {exc}; nothing was changed.", file=sys.stderr)
        return 1
    return 0


def db_upgrade(_args: argparse.Namespace) -> int:
    upgrade_database(Settings.from_env().database_url)
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="chat", description="A real-time chat server.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve_parser = commands.add_parser("serve", help="run the web server")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8000)
    serve_parser.add_argument("--workers", type=int, default=1)
    serve_parser.set_defaults(run=serve)

    db_parser = commands.add_parser("db", help="database migrations")
    db_commands = db_parser.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="migrate to the newest schema").set_defaults(
        run=db_upgrade
    )

    user_parser = commands.add_parser("create-user", help="add an account (asks the password)")
    user_parser.add_argument("username")
    user_parser.add_argument("--admin", action="store_true", help="make it an administrator")
    user_parser.set_defaults(run=create_user)

    bot_parser = commands.add_parser("create-bot", help="add a bot account (no password)")
    bot_parser.add_argument("name")
    bot_parser.add_argument("--owner", help="the user who manages it on /account/bots")
    bot_parser.set_defaults(run=create_bot)

    token_parser = commands.add_parser(
        "create-token", help="issue an API token to a user or bot (printed once)"
    )
    token_parser.add_argument("username")
    token_parser.add_argument("--name", required=True, help="what the token is for")
    token_parser.add_argument(
        "--write", action="store_true", help="may post, edit, delete and react (else read only)"
    )
    token_parser.add_argument(
        "--room", type=int, action="append", default=[], help="limit it to this room id (repeat)"
    )
    token_parser.set_defaults(run=create_token)

    admin_parser = commands.add_parser("admin", help="make an account an administrator or not")
    admin_parser.add_argument("action", choices=["grant", "revoke"])
    admin_parser.add_argument("username")
    admin_parser.set_defaults(run=admin)

    export_parser = commands.add_parser("export", help="write the instance (or a room) as NDJSON")
    export_parser.add_argument("--room", type=int, help="only this room (by id)")
    export_parser.add_argument("--output", help="the file to write (default: standard output)")
    export_parser.set_defaults(run=export)

    import_parser = commands.add_parser("import", help="read an export into an empty database")
    import_parser.add_argument("input", nargs="?", help="the file (default: standard input)")
    import_parser.set_defaults(run=import_)

    backup_parser = commands.add_parser("backup", help="copy the database and media, live")
    backup_parser.add_argument("path", help="a new (or empty) directory")
    backup_parser.set_defaults(run=backup_command)

    restore_parser = commands.add_parser("restore", help="put a backup back (server stopped)")
    restore_parser.add_argument("path", help="the backup's directory")
    restore_parser.add_argument("--replace", action="store_true", help="overwrite the database")
    restore_parser.set_defaults(run=backup_command)

    # Named in the help; parsed and run by bench/, imported only when asked for.
    commands.add_parser("seed", help="fill a database with realistic chat history", add_help=False)
    commands.add_parser("bench", help="measure a scenario (docs/performance.md)", add_help=False)

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["seed"], ["bench"]):
        from bench.cli import main as bench_main

        bench_main(argv, prog="chat")
        return
    args = parser.parse_args(argv)
    sys.exit(args.run(args))
