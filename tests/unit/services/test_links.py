"""Approval links: signed so that no byte of them can change, verified under any held key."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.errors import NotAllowed
from orchestrator.services.links import Claims, sign, verify

KEYS = ("zT5cQ2H3uJ8GZbqL9cW1mA4vN7xY0kE6rP2sD5fG8hI=",)
CLAIMS = Claims(42, "run-1", "resume", "role:operator", 2_000_000_000)


def test_a_link_says_what_it_was_signed_with_and_the_same_claims_give_the_same_link():
    token = sign(KEYS, CLAIMS)
    assert verify(KEYS, token) == CLAIMS
    assert sign(KEYS, CLAIMS) == token


def test_a_link_signed_with_an_older_key_still_verifies_after_rotation():
    assert verify(("new-key", *KEYS), sign(KEYS, CLAIMS)) == CLAIMS
    with pytest.raises(NotAllowed):
        verify(("new-key",), sign(KEYS, CLAIMS))


@given(st.integers(min_value=0), st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
def test_any_changed_character_makes_a_link_invalid(position, char):
    token = sign(KEYS, CLAIMS)
    i = position % len(token)
    changed = token[:i] + char + token[i + 1:]
    if changed != token:
        with pytest.raises(NotAllowed):
            verify(KEYS, changed)
