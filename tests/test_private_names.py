"""The private names of other libraries that chat relies on, each library pinned to its
minor version in pyproject.toml. An upgrade that renames or drops one fails here, with
the name, rather than somewhere deep in a stream or a post. Whether the code that uses
them still behaves the same is tested beside it (tests/test_stream_serving.py,
tests/test_run_prepared.py)."""

from __future__ import annotations

import asyncio
import inspect
import re
import sqlite3
import tomllib
from pathlib import Path

import aiosqlite
import sqlalchemy
import sse_starlette
import uvicorn
from packaging.requirements import Requirement
from packaging.version import Version
from sqlalchemy import Integer, bindparam, column, select, table
from sqlalchemy.dialects import sqlite
from sse_starlette import EventSourceResponse
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

ROOT = Path(__file__).resolve().parent.parent


def requirement(name: str) -> Requirement:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"]:
        parsed = Requirement(line)
        if parsed.name == name:
            return parsed
    raise AssertionError(f"{name} is not a dependency")


def test_each_library_whose_private_names_chat_uses_is_pinned_to_the_installed_minor():
    for name, module in [
        ("sse-starlette", sse_starlette),
        ("uvicorn", uvicorn),
        ("aiosqlite", aiosqlite),
        ("sqlalchemy", sqlalchemy),
    ]:
        specifier = requirement(name).specifier
        installed = Version(module.__version__)
        assert installed in specifier, f"{name} {installed} is outside {specifier}"
        minor = Version(f"{installed.major}.{installed.minor + 1}")
        assert minor not in specifier, f"{name} is not pinned to its minor version"


def test_sse_starlette_still_has_the_exit_detection_the_streams_wait_on():
    # chat.streams.OpenStreams._end_all_at_shutdown
    assert inspect.iscoroutinefunction(EventSourceResponse._listen_for_exit_signal)


def test_uvicorn_httptools_connection_still_has_the_fields_a_direct_write_reads():
    # chat.stream_connection.DirectWrite.write reads these.
    source = inspect.getsource(RequestResponseCycle.__init__)
    for field in ("transport", "flow", "chunked_encoding", "response_complete", "disconnected"):
        assert f"self.{field} =" in source or f"self.{field}:" in source, (
            f"RequestResponseCycle.{field} is gone"
        )
    assert "self.write_paused =" in inspect.getsource(FlowControl.__init__)


def test_uvicorn_httptools_connection_still_signals_a_lost_client_through_message_event():
    # chat.stream_connection.DisconnectSignal replaces message_event: connection_lost must still
    # mark the cycle disconnected and then set that event, and receive() wait on it.
    lost = inspect.getsource(HttpToolsProtocol.connection_lost)
    assert lost.index("self.cycle.disconnected = True") < lost.index(
        "self.cycle.message_event.set()"
    )
    assert "self.message_event = message_event" in inspect.getsource(RequestResponseCycle.__init__)
    assert "await self.message_event.wait()" in inspect.getsource(RequestResponseCycle.receive)


async def test_uvicorns_flow_control_still_waits_on_an_event_whose_waiters_a_list_can_hold():
    # chat.stream_connection._lighten_writable_event swaps the Event's deque for a list.
    flow = FlowControl(transport=None)
    event = flow._is_writable_event
    assert isinstance(event, asyncio.Event) and not event._waiters
    event._waiters = []
    event.clear()
    waiting = asyncio.ensure_future(flow.drain())
    await asyncio.sleep(0)
    assert len(event._waiters) == 1
    event.set()
    await waiting
    assert event._waiters == []


def test_uvicorns_httptools_protocol_still_uses_its_pipeline_only_as_a_pipeline_can():
    # chat.stream_connection.Pipeline stands in for the deque; the cycle's on_response
    # is how a stream finds the protocol.
    source = inspect.getsource(HttpToolsProtocol)
    uses = re.findall(r"self\.pipeline(\.\w+)?", source)
    assert set(uses) <= {"", ".appendleft", ".pop"}, uses
    assert "on_response=self.on_response_complete" in source


def test_uvicorns_httptools_protocol_still_reads_its_parser_only_while_feeding_it():
    # chat.stream_connection.ParserOnDemand stands in for the parser of an open stream's
    # connection and makes one, as __init__ does, when data_received feeds it: nothing
    # else may ask the parser anything outside what feed_data calls back.
    allowed = {
        "__init__": {"=", ".set_dangerous_leniencies"},
        "data_received": {".feed_data"},
        "connection_lost": {"="},
        # Parser callbacks, called only from within feed_data:
        "on_headers_complete": {
            ".get_http_version",
            ".get_method",
            ".should_upgrade",
            ".should_keep_alive",
        },
        "on_body": {".should_upgrade"},
        "on_message_complete": {".should_upgrade"},
    }
    for name, method in inspect.getmembers(HttpToolsProtocol, inspect.isfunction):
        uses = set(re.findall(r"self\.parser\s*(\.\w+|=)", inspect.getsource(method)))
        assert uses <= allowed.get(name, set()), (name, uses)
    source = inspect.getsource(HttpToolsProtocol.__init__)
    assert "self.parser = httptools.HttpRequestParser(self)" in source
    assert "set_dangerous_leniencies(lenient_data_after_close=True)" in source


async def test_aiosqlite_still_has_the_queue_and_connection_the_sqlite_fast_path_uses():
    # chat.hot_statements (SqliteConnectionQueue._hop, run_prepared): work on its thread.
    async with aiosqlite.connect(":memory:") as connection:
        assert isinstance(connection._conn, sqlite3.Connection)
        assert await connection._execute(lambda: 42) == 42


async def test_asyncio_futures_still_carry_the_flag_a_task_clears_before_it_waits():
    # chat.stream_connection.watch_disconnect steps a server's receive() as a task would.
    future = asyncio.get_running_loop().create_future()
    assert future._asyncio_future_blocking is False


def test_sqlalchemy_still_offers_what_prepared_statements_and_detached_rows_use():
    # chat.hot_statements._Compiled.of and Detached.
    from sqlalchemy.orm.instrumentation import manager_of_class

    assert callable(manager_of_class)
    numbers = table("numbers", column("n", Integer))
    compiled = (
        select(numbers.c.n).where(numbers.c.n == bindparam("n")).compile(dialect=sqlite.dialect())
    )
    assert [compiled.binds[name].key for name in compiled.positiontup] == ["n"]
