"""The rules for room names (and topics), in one place: creating and renaming rooms both use
`clean_room_name`, and `room_name_key` is what makes two names the same room.

A name is NFKC-normalised (full-width letters, ligatures and the like become the
plain ones), its runs of white space become one space, and it is refused when it
holds control or format characters (bidi overrides, zero-width joiners, tags), more
than MAX_MARKS combining marks on one character (the stacked "Zalgo" text), or a word
that mixes Latin, Greek and Cyrillic letters (a Cyrillic "e", U+0435, inside "general").
"""

from __future__ import annotations

import unicodedata

MAX_ROOM_NAME = 80
# Combining marks allowed on one character: Vietnamese and Devanagari need two or
# three, a mark stacked dozens of times is an attack on the layout.
MAX_MARKS = 4
# Scripts whose letters look alike: one word may use only one of them.
LOOK_ALIKE_SCRIPTS = frozenset({"LATIN", "GREEK", "CYRILLIC"})
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})


class InvalidRoomName(ValueError):
    """Why a name cannot be a room's, for the person who typed it."""


def clean_room_name(raw: str) -> str:
    """The name as it is stored; raises InvalidRoomName."""
    name = " ".join(unicodedata.normalize("NFKC", raw).split())
    if not 1 <= len(name) <= MAX_ROOM_NAME:
        raise InvalidRoomName(f"Room names are 1 to {MAX_ROOM_NAME} characters.")
    if any(unicodedata.category(char) in FORBIDDEN_CATEGORIES for char in name):
        raise InvalidRoomName("Room names cannot contain control or invisible characters.")
    marks = 0
    for char in name:
        marks = marks + 1 if unicodedata.category(char).startswith("M") else 0
        if marks > MAX_MARKS:
            raise InvalidRoomName(f"Room names allow at most {MAX_MARKS} accents on a letter.")
    for word in name.split():
        if len(_scripts(word) & LOOK_ALIKE_SCRIPTS) > 1:
            raise InvalidRoomName(
                "A word of a room name cannot mix Latin, Greek and Cyrillic letters."
            )
    return name


def room_name_key(name: str) -> str:
    """What two names that are the same room have in common: case folded after NFKC
    (so "General", "GENERAL" and its full-width form are one name, on every backend)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def _scripts(word: str) -> set[str]:
    """The scripts of a word's letters, as the first word of their Unicode names."""
    return {unicodedata.name(char, "?").split(" ", 1)[0] for char in word if char.isalpha()}


MAX_TOPIC = 250


def clean_topic(raw: str) -> str:
    """A room's topic as it is stored ("" clears it): one line of at most MAX_TOPIC
    characters; raises InvalidRoomName."""
    topic = unicodedata.normalize("NFC", raw).strip()
    if "\n" in topic or "\r" in topic:
        raise InvalidRoomName("A topic is one line.")
    if len(topic) > MAX_TOPIC:
        raise InvalidRoomName(f"A topic is at most {MAX_TOPIC} characters.")
    if any(unicodedata.category(char) in FORBIDDEN_CATEGORIES for char in topic):
        raise InvalidRoomName("A topic cannot contain control or invisible characters.")
    return topic
