"""A checkpoint's hash and signature: what vouches for the audit chains without the database."""
from __future__ import annotations

import base64
import datetime as dt

import pytest

from orchestrator.store import checkpoints

AT = dt.datetime(2026, 12, 2, 16, 0, 0, 123456, tzinfo=dt.UTC)
HEADS = [{"chain": "run:1", "seq": 4, "hash": "ab"}, {"chain": "system", "seq": 9, "hash": "cd"}]


def test_a_checkpoints_hash_covers_the_one_before_its_place_its_time_and_every_head() -> None:
    digest = checkpoints.checkpoint_hash("00", 2, AT, HEADS)
    assert digest == checkpoints.checkpoint_hash("00", 2, AT.astimezone(dt.timezone(dt.timedelta(hours=2))), HEADS)
    assert digest == checkpoints.checkpoint_hash("00", 2, AT, [{"seq": 4, "hash": "ab", "chain": "run:1"}, HEADS[1]])
    changed = [("01", 2, AT, HEADS), ("00", 3, AT, HEADS), ("00", 2, AT + dt.timedelta(microseconds=1), HEADS),
               ("00", 2, AT, HEADS[:1]), ("00", 2, AT, [{**HEADS[0], "seq": 5}, HEADS[1]])]
    assert len({checkpoints.checkpoint_hash(*args) for args in changed} | {digest}) == len(changed) + 1


def test_only_the_private_keys_signature_verifies_with_its_public_key() -> None:
    private, public = checkpoints.new_key_pair()
    key, other = checkpoints.private_key(private), checkpoints.private_key(checkpoints.new_key_pair()[0])
    digest = checkpoints.checkpoint_hash(None, 1, AT, HEADS)
    signature = base64.b64encode(key.sign(digest.encode())).decode()
    assert checkpoints.signed_by(checkpoints.public_key(public), digest, signature)
    forged = base64.b64encode(other.sign(digest.encode())).decode()
    assert not checkpoints.signed_by(checkpoints.public_key(public), digest, forged)
    assert not checkpoints.signed_by(checkpoints.public_key(public), digest[:-1] + "0", signature)
    assert not checkpoints.signed_by(checkpoints.public_key(public), digest, "not base64!")


@pytest.mark.parametrize("encoded", ["", "abc", "c2hvcnQ=", "!" * 44])
def test_a_key_that_is_not_32_base64_bytes_is_refused_by_name(encoded) -> None:
    with pytest.raises(ValueError, match="MILLRACE_AUDIT_KEY must be the base64 of 32 bytes"):
        checkpoints.private_key(encoded)
    with pytest.raises(ValueError, match="MILLRACE_AUDIT_PUBLIC_KEY"):
        checkpoints.public_key(encoded)
