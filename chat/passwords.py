"""Password rules in the spirit of NIST SP 800-63B: long enough, not the username, not
one character repeated, and not one of the passwords people use most (a list shipped
with the package); no rules about which kinds of characters it must contain."""

from __future__ import annotations

from functools import cache
from pathlib import Path

MIN_PASSWORD, MAX_PASSWORD = 8, 1024
COMMON_PASSWORDS = Path(__file__).resolve().parent / "data" / "common-passwords.txt"


@cache
def common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS.read_text(encoding="utf-8").splitlines()
    return frozenset(line for line in lines if line and not line.startswith("# "))


def password_problem(password: str, username: str) -> str | None:
    """Why `password` will not do for `username`, for them to read; None when it will."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        return f"Passwords are {MIN_PASSWORD} to {MAX_PASSWORD} characters long."
    folded = password.casefold()
    if len(set(folded.strip())) <= 1:
        return "A password cannot be one character repeated, or only spaces."
    name = username.casefold()
    # The username itself, or with only digits or punctuation around it ("alice1!").
    if name and name in folded and not any(c.isalpha() for c in folded.replace(name, "", 1)):
        return "A password cannot be your username."
    if folded in common_passwords():
        return "That password is one of the most common ones. Choose another."
    return None
