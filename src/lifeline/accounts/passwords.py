"""What a web password must be: 12 characters or more, and not one of the most common ones.

The list shipped beside this module is the 10,000 most common passwords of public breach
corpora (the head of the list Django ships), compared case-insensitively.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 200


@cache
def _common() -> frozenset[str]:
    text = resources.files("lifeline.accounts").joinpath("common-passwords.txt").read_text()
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


def password_problem(password: str) -> str | None:
    """Why ``password`` is refused, or None when it is acceptable."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"must be at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"must be at most {MAX_PASSWORD_LENGTH} characters"
    if password.strip().lower() in _common():
        return "is one of the most commonly used passwords; choose another"
    return None


def check_password(password: str) -> str:
    """``password`` itself, or ValueError saying why it is refused (for validators)."""
    problem = password_problem(password)
    if problem is not None:
        raise ValueError(problem)
    return password
