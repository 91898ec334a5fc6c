"""Origins and event ids as the streams read them."""

from __future__ import annotations

import pytest

from lifeline.deps import origin_of
from lifeline.errors import Unprocessable
from lifeline.realtime.auth import parse_last_event_id


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("https://Lifeline.Example.com/", "https://lifeline.example.com"),
        ("https://lifeline.example.com:443/app", "https://lifeline.example.com"),
        ("http://lifeline.example.com:80", "http://lifeline.example.com"),
        ("http://[::1]:8000", "http://[::1]:8000"),
    ],
)
def test_origin_of_matches_what_browsers_send(url: str, origin: str) -> None:
    assert origin_of(url) == origin


def test_a_lookalike_origin_is_another_origin() -> None:
    base = "https://lifeline.example.com"
    assert origin_of("https://lifeline.example.com.evil.test") != origin_of(base)
    assert origin_of("http://lifeline.example.com") != origin_of(base)
    assert origin_of("https://lifeline.example.com:8443") != origin_of(base)


def test_last_event_id_header_wins_over_the_query() -> None:
    # An EventSource reconnecting sends the newer id in the header; the URL keeps the old one.
    assert parse_last_event_id("42", "7") == 42
    assert parse_last_event_id(None, "7") == 7
    assert parse_last_event_id("", None) is None


@pytest.mark.parametrize("bad", ["abc", "-1", "1.5", "٣", "9" * 19])
def test_last_event_id_must_be_a_plain_integer(bad: str) -> None:
    with pytest.raises(Unprocessable, match="last_event_id"):
        parse_last_event_id(None, bad)
