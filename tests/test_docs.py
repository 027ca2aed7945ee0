"""The README is the manual: these tests keep it true."""

import re

from chat.routes import routes
from tests.support import ROOT

README = (ROOT / "README.md").read_text()


def test_quick_start_is_make_run_and_make_test():
    quick_start = README.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "make run" in quick_start and "make test" in quick_start


def test_every_setting_read_from_the_environment_is_documented():
    source = (ROOT / "chat" / "settings.py").read_text()
    variables = set(re.findall(r'"(CHAT_[A-Z_]+)"', source))
    assert variables, "settings.py reads no CHAT_ variables?"
    for variable in variables:
        assert f"`{variable}`" in README, variable


def test_every_route_is_documented():
    for route in routes:
        if getattr(route, "name", None) == "static":
            continue
        path = re.sub(
            r"\{(\w+):int\}", lambda m: "{" + m.group(1).replace("room_id", "id") + "}", route.path
        )
        assert path in README, path


def test_vendored_front_end_packages_carry_their_versions():
    for path in (ROOT / "chat" / "static" / "vendor").iterdir():
        first_line = path.read_text().splitlines()[0]
        assert re.search(r"\d+\.\d+\.\d+", first_line), path.name
        assert "npm" in first_line, path.name
