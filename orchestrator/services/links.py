"""Resume and cancel links of a waiting approval: signed with the installation's secret key,
issued for one approver the step's rule allows, expiring, and followed once.

A link is ``<claims>.<signature>``, both base64url: the claims (attempt, run, action, for
whom, until when) as JSON, signed with HMAC-SHA256 under a key derived from
``MILLRACE_SECRET_KEY``. The same claims give the same link, so every listing shows an
approver the same link, and following it once spends it for good (``approval_links``).
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass, replace
from typing import Any, Literal

from sqlalchemy import Engine

from orchestrator.errors import Gone, NotAllowed, Problem, ValidationError
from orchestrator.execution.lifecycle import StepStatus
from orchestrator.services.approvals import Decider, approval_of, decide_attempt, may_decide
from orchestrator.services.decisions import cancel
from orchestrator.services.publisher import Publisher, Revoke
from orchestrator.store import access, approvals
from orchestrator.store.approvals import ApprovalAttempt

Action = Literal["resume", "cancel"]
_PURPOSE = b"millrace approval links v1"


@dataclass(frozen=True)
class Claims:
    """What a link says: follow it to ``action`` attempt ``attempt_id`` of run ``run_id``, as
    ``approver`` (``role:<name>`` or ``token:<id>``), before ``expires_at`` (Unix seconds).
    ``issuer``: who had it made (as a run's starter is named): a link decides for self_approval
    as its issuer, so a run's starter cannot approve it through a link made for their role."""

    attempt_id: int
    run_id: str
    action: Action
    approver: str
    expires_at: int
    issuer: str = ""

    def to_json(self) -> bytes:
        return json.dumps({"a": self.attempt_id, "r": self.run_id, "do": self.action, "for": self.approver,
                           "exp": self.expires_at, "by": self.issuer}, separators=(",", ":"), sort_keys=True).encode()


def _key(secret_key: str) -> bytes:
    # a key of its own, derived: a link's signature says nothing about the Fernet key
    return hmac.new(secret_key.encode(), _PURPOSE, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """The bytes of unpadded base64url ``text``, refusing any text but the one encoding of them:
    the last character's unused bits could otherwise change, making another token of the same
    link (and a single-use link, keyed by its token, usable once per spelling)."""
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not the canonical encoding")
    return data


def sign(keys: tuple[str, ...], claims: Claims) -> str:
    """The link token of ``claims``, signed with the newest key."""
    body = claims.to_json()
    return f"{_b64(body)}.{_b64(hmac.new(_key(keys[0]), body, hashlib.sha256).digest())}"


def verify(keys: tuple[str, ...], token: str) -> Claims:
    """The claims of a link token signed with any of ``keys``; NotAllowed for one altered,
    made elsewhere, or signed with a key no longer held."""
    refused = NotAllowed("this link is not valid: it was altered, or not issued by this installation")
    body_text, _, signature_text = token.partition(".")
    try:
        body, signature = _unb64(body_text), _unb64(signature_text)
    except (binascii.Error, ValueError):
        raise refused from None
    if not any(hmac.compare_digest(hmac.new(_key(k), body, hashlib.sha256).digest(), signature) for k in keys):
        raise refused
    data = json.loads(body)
    return Claims(data["a"], data["r"], data["do"], data["for"], data["exp"], data.get("by", ""))


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Links:
    """A waiting approval's links for one approver."""

    approver: str
    resume: str
    cancel: str
    expires_at: dt.datetime


def approver_of(engine: Engine, wanted: str) -> tuple[str, Decider]:
    """``role:<name>`` or ``token:<name or id>`` as a link's approver and who it decides as;
    ValidationError for anything else, or a token name that is not exactly one live token."""
    kind, _, name = wanted.partition(":")
    if kind == "role" and name:
        return f"role:{name}", Decider(f"role:{name} (link)", f"role:{name}", role=name)
    if kind == "token" and name:
        found = access.active_tokens(engine, name)
        if len(found) == 1:
            return f"token:{found[0].token_id}", Decider.of(found[0], via=" (link)")
        problem = "no live token is" if not found else f"{len(found)} tokens are"
        raise ValidationError([Problem("approver", f"{problem} named '{name}'; give a token's name or its id")])
    raise ValidationError([Problem("approver", "write role:<role> or token:<name or id>")])


def expiry(attempt: ApprovalAttempt, ttl: float) -> int:
    """When an attempt's links stop working: ``ttl`` after it began waiting, never past its timeout."""
    end = attempt.waiting_since + dt.timedelta(seconds=ttl)
    if attempt.resume_at is not None:
        end = min(end, attempt.resume_at)
    return int(end.timestamp())


def issue(publisher: Publisher, keys: tuple[str, ...], ttl: float, base_url: str, attempt: ApprovalAttempt,
          wanted: str, issuer: str) -> Links:
    """The resume and cancel links of ``attempt`` for approver ``wanted``, made for ``issuer``;
    NotAllowed when its rule does not let that approver decide (a link obeys the rule it was
    issued under)."""
    if not keys:
        raise NotAllowed("approval links need MILLRACE_SECRET_KEY (they are signed with it)")
    approver, decider = approver_of(publisher.engine, wanted)
    if not may_decide(approval_of(publisher, attempt), decider):
        raise NotAllowed(f"step '{attempt.path}' may not be decided by {approver}: no link is issued for it")
    expires = expiry(attempt, ttl)
    made = {action: sign(keys, Claims(attempt.id, attempt.run_id, action, approver, expires, issuer))
            for action in ("resume", "cancel")}
    return Links(approver, f"{base_url}/approvals/{made['resume']}", f"{base_url}/approvals/{made['cancel']}",
                 dt.datetime.fromtimestamp(expires, dt.UTC))


@dataclass(frozen=True)
class Opened:
    """A link followed far enough to show its page: what it does, to which step, as whom."""

    claims: Claims
    attempt: ApprovalAttempt
    decider: Decider
    token: str


def open_link(publisher: Publisher, keys: tuple[str, ...], token: str, now: dt.datetime) -> Opened:
    """Check a link without using it: signed by us (NotAllowed), not expired nor used, its step
    still waiting (Gone), its approver still one the rule allows (NotAllowed)."""
    claims = verify(keys, token)
    used = approvals.link_used_at(publisher.engine, digest(token))
    if used is not None:
        raise Gone(f"this link was used already, at {used:%Y-%m-%d %H:%M:%S} UTC; a link decides once")
    if now.timestamp() >= claims.expires_at:
        raise Gone(f"this link expired at {dt.datetime.fromtimestamp(claims.expires_at, dt.UTC):%Y-%m-%d %H:%M:%S}"
                   " UTC")
    attempt = approvals.approval_attempt(publisher.engine, claims.attempt_id)
    if attempt.status is not StepStatus.WAITING:
        raise Gone(f"step '{attempt.path}' of run {attempt.run_id} was decided already ({attempt.status.value})")
    try:
        _, decider = approver_of(publisher.engine, claims.approver)
    except ValidationError:
        raise NotAllowed(f"the token this link was issued for ({claims.approver}) is revoked") from None
    if not may_decide(approval_of(publisher, attempt), decider):
        raise NotAllowed(f"{claims.approver} may no longer decide step '{attempt.path}'")
    if claims.issuer:  # self_approval compares the run's starter with whoever had the link made
        decider = replace(decider, identity=claims.issuer)
    return Opened(claims, attempt, decider, token)


def follow(publisher: Publisher, revoke: Revoke, opened: Opened, *, approve: bool,
           values: dict[str, Any] | None = None, reason: str | None = None) -> Any:
    """Do what an opened link says, once: decide its approval (resume: approve with the form's
    values, or reject) or cancel its run. ``opened`` was checked by ``open_link`` just before;
    refused values leave the link unused."""
    claims = opened.claims

    def spend() -> None:
        if not approvals.spend_link(publisher.engine, digest(opened.token), claims.attempt_id, claims.action,
                                    claims.approver):
            raise Gone("this link was used already; a link decides once")

    if claims.action == "cancel":
        spend()
        cancel(publisher, revoke, claims.run_id, actor=opened.decider.actor)
        return None
    return decide_attempt(publisher, opened.attempt, approve=approve, decider=opened.decider, values=values,
                          reason=reason, before=spend)
