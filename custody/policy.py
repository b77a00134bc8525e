"""C2SP tlog-policy (https://c2sp.org/tlog-policy): which logs and witnesses a client trusts, and
the quorum of witness cosignatures a checkpoint needs before the client accepts it.

A policy file, line by line (``#`` comments and blank lines ignored, fields separated by spaces
or tabs)::

    log <log vkey> [<url>]
    witness <name> <cosigner vkey> [<url>]
    group <name> all|any|<k> <member>...
    quorum <name>|none

:meth:`Policy.verify_checkpoint` is what accepting a checkpoint means: signed by one of the
policy's logs (the log key's name is the origin), every cosignature by a policy witness valid,
and the witnesses that cosigned satisfy the quorum.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from custody.checkpoint import Checkpoint
from custody.cosignature import CosignerKey, verify_cosignatures
from custody.errors import FormatError, SignatureError, VerificationError
from custody.note import VerifierKey, parse_note

__all__ = [
    "MAX_POLICY_BYTES",
    "Group",
    "Policy",
    "PolicyError",
    "PolicyLog",
    "PolicyWitness",
    "QuorumNotMet",
    "WitnessedCheckpoint",
]

MAX_POLICY_BYTES = 64 * 1024  # a policy names a few dozen keys; bound what we parse
# tlog-policy recommends supporting at least 32 of each; we allow a margin and no more.
MAX_LOGS = MAX_WITNESSES = MAX_GROUPS = 256
NONE = "none"
_DESCRIBED_LEVELS, _DESCRIBED_CHARS = 3, 200  # describe_quorum: how much nesting is spelled out
_FIELD_SEP = re.compile(r"[ \t]+")
_BAD_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class PolicyError(FormatError):
    """The policy file is not a valid tlog-policy (the reason names the line)."""


class QuorumNotMet(VerificationError):
    """The checkpoint is validly signed by the log, but too few policy witnesses cosigned it.

    Attributes:
        cosigned: Policy names of the witnesses whose valid cosignatures were found.
    """

    def __init__(self, reason: str, *, cosigned: tuple[str, ...]) -> None:
        self.cosigned = cosigned
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class PolicyLog:
    key: VerifierKey
    url: str | None = None


@dataclass(frozen=True, slots=True)
class PolicyWitness:
    name: str
    key: CosignerKey
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Group:
    """Witnessed when at least ``threshold`` of ``members`` (witnesses or groups) are."""

    name: str
    threshold: int
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WitnessedCheckpoint:
    """A checkpoint accepted under a policy: the log key that signed it and the witnesses (by
    policy name) whose cosignatures verified, with each cosignature's timestamp."""

    checkpoint: Checkpoint
    note: str
    log_key: VerifierKey
    cosigned: Mapping[str, int]


@dataclass(frozen=True)
class Policy:
    """A parsed tlog-policy. Build it with :meth:`parse` (or :meth:`for_log`)."""

    logs: tuple[PolicyLog, ...]
    witnesses: Mapping[str, PolicyWitness]
    groups: Mapping[str, Group]
    quorum: str
    text: str = field(default="", compare=False)

    # -- reading -----------------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str | bytes) -> Policy:
        """Parse a policy file.

        Raises:
            PolicyError: Anything the tlog-policy specification does not allow: unknown line
                types, bad keys, duplicate keys or names, forward references, a threshold out
                of range, a quorum line missing or repeated.
        """
        text = _policy_text(text)
        logs: list[PolicyLog] = []
        witnesses: dict[str, PolicyWitness] = {}
        groups: dict[str, Group] = {}
        quorum: str | None = None
        for number, raw in enumerate(text.split("\n"), start=1):
            if _BAD_CHARS.search(raw):
                raise PolicyError(f"line {number}: control characters other than tab")
            line = raw.strip(" \t")
            if not line or line.startswith("#"):
                continue
            kind, *args = _FIELD_SEP.split(line)
            try:
                if kind == "log":
                    logs.append(_parse_log(args, logs))
                elif kind == "witness":
                    witness = _parse_witness(args, witnesses, groups)
                    witnesses[witness.name] = witness
                elif kind == "group":
                    group = _parse_group(args, witnesses, groups)
                    groups[group.name] = group
                elif kind == "quorum":
                    quorum = _parse_quorum(args, quorum, witnesses, groups)
                else:
                    raise ValueError(f"unknown line type {kind!r}")
            except (ValueError, FormatError) as exc:
                reason = exc.reason if isinstance(exc, FormatError) else str(exc)
                raise PolicyError(f"line {number}: {reason}") from None
        if quorum is None:
            raise PolicyError("policy has no quorum line")
        return cls(tuple(logs), witnesses, groups, quorum, text)

    @classmethod
    def for_log(cls, key: VerifierKey) -> Policy:
        """The policy of a client that trusts one log key and requires no witnesses."""
        return cls.parse(f"log {key}\nquorum none\n")

    def canonical(self) -> str:
        """The policy as normalized text (no comments, logs and witnesses sorted): two
        policies that mean the same have the same canonical text."""
        lines = sorted(f"log {log.key}" + (f" {log.url}" if log.url else "") for log in self.logs)
        lines += [f"witness {w.name} {w.key}" + (f" {w.url}" if w.url else "")
                  for w in sorted(self.witnesses.values(), key=lambda w: w.name)]
        for group in self.groups.values():
            threshold = "all" if group.threshold == len(group.members) else str(group.threshold)
            lines.append(f"group {group.name} {threshold} {' '.join(group.members)}")
        lines.append(f"quorum {self.quorum}")
        return "\n".join(lines) + "\n"

    def describe_quorum(self) -> str:
        """The quorum in words, e.g. ``2 of W1, W2, W3``; a nested group is spelled out in
        parentheses while that stays short (three levels, 200 characters), else named -- a
        group of groups of groups would otherwise spell out exponentially many names. The
        browser (service/web/static/witness.js) words it the same."""
        return self._describe(self.quorum, 0)

    def _describe(self, name: str, depth: int) -> str:
        if name == NONE:
            return "no witness cosignature"
        group = self.groups.get(name)
        if group is None:
            return name
        members = []
        for member in group.members:
            if member not in self.groups:
                members.append(member)
                continue
            inner = self._describe(member, depth + 1) if depth < _DESCRIBED_LEVELS else None
            members.append(f"({inner})" if inner and len(inner) <= _DESCRIBED_CHARS else member)
        return f"{group.threshold} of " + ", ".join(members)

    # -- deciding ----------------------------------------------------------------------------

    def is_witnessed(self, cosigned: Iterable[str]) -> bool:
        """Whether the witnesses named in ``cosigned`` (policy names) satisfy the quorum. Each
        group is decided once: a chain of groups that each name the two before costs linear
        time, not exponential."""
        done = set(cosigned)
        return self._satisfied(self.quorum, done, {})

    def _satisfied(self, name: str, done: set[str], decided: dict[str, bool]) -> bool:
        if name == NONE:
            return True
        group = self.groups.get(name)
        if group is None:
            return name in done
        if name not in decided:
            decided[name] = sum(self._satisfied(member, done, decided)
                                for member in group.members) >= group.threshold
        return decided[name]

    def log_key_for(self, origin: str) -> tuple[VerifierKey, ...]:
        """The policy's log keys for ``origin`` (a log key's name is its origin)."""
        return tuple(log.key for log in self.logs if log.key.name == origin)

    def verify_checkpoint(self, note: str | bytes) -> WitnessedCheckpoint:
        """Accept a signed checkpoint only if this policy is met.

        Raises:
            FormatError: The note or checkpoint is malformed.
            SignatureError: No policy log key signed it (or a log key's signature is bad), or
                a policy witness's cosignature on it does not verify.
            QuorumNotMet: Validly signed, but the cosigning witnesses do not make the quorum.
        """
        parsed = parse_note(note)
        unverified = Checkpoint.from_note_body(parsed.text)
        keys = self.log_key_for(unverified.origin)
        if not keys:
            raise SignatureError(f"no log in the policy has origin {unverified.origin!r}")
        checkpoint: Checkpoint | None = None
        log_key = keys[0]
        for log_key in keys:
            try:
                checkpoint = Checkpoint.verify(note, log_key)
                break
            except SignatureError:
                if len(keys) == 1:
                    raise
        if checkpoint is None:
            raise SignatureError(f"no policy log key for {unverified.origin!r} signed the "
                                 "checkpoint")
        by_key = {w.key: w.name for w in self.witnesses.values()}
        found = verify_cosignatures(note, by_key)
        cosigned = {by_key[key]: timestamp for key, timestamp in found.items()}
        if not self.is_witnessed(cosigned):
            names = tuple(sorted(cosigned))
            raise QuorumNotMet(
                f"checkpoint of size {checkpoint.size} is cosigned by "
                f"{', '.join(names) if names else 'no policy witness'}; the policy requires "
                f"{self.describe_quorum()}", cosigned=names)
        text = note if isinstance(note, str) else note.decode("utf-8")
        return WitnessedCheckpoint(checkpoint, text, log_key, cosigned)


def _url(args: list[str], at: int, kind: str) -> str | None:
    if len(args) > at + 1:
        raise ValueError(f"too many fields on a {kind} line")
    return args[at] if len(args) == at + 1 else None


def _policy_text(text: str | bytes) -> str:
    """The policy as text, once it is UTF-8 and within ``MAX_POLICY_BYTES``."""
    if isinstance(text, bytes):
        if len(text) > MAX_POLICY_BYTES:
            raise PolicyError(f"policy exceeds {MAX_POLICY_BYTES} bytes")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyError("policy is not UTF-8") from None
    if len(text.encode("utf-8", "surrogatepass")) > MAX_POLICY_BYTES:
        raise PolicyError(f"policy exceeds {MAX_POLICY_BYTES} bytes")
    return text


def _parse_quorum(args: list[str], quorum: str | None, witnesses: Mapping[str, PolicyWitness],
                  groups: Mapping[str, Group]) -> str:
    if quorum is not None:
        raise ValueError("a policy has exactly one quorum line")
    if len(args) != 1:
        raise ValueError("quorum takes one name")
    if args[0] != NONE and args[0] not in witnesses and args[0] not in groups:
        raise ValueError(f"quorum {args[0]!r} is not a witness or group defined above")
    return args[0]


def _parse_log(args: list[str], logs: list[PolicyLog]) -> PolicyLog:
    if not args:
        raise ValueError("log needs a verifier key")
    key = VerifierKey.parse(args[0])
    if any(log.key.public_key == key.public_key for log in logs):
        raise ValueError("duplicate log key")
    if len(logs) >= MAX_LOGS:
        raise ValueError(f"more than {MAX_LOGS} logs")
    return PolicyLog(key, _url(args, 1, "log"))


def _new_name(name: str, witnesses: Mapping[str, object], groups: Mapping[str, object]) -> None:
    if name == NONE:
        raise ValueError("'none' is predefined and cannot be redefined")
    if name in witnesses or name in groups:
        raise ValueError(f"name {name!r} is already defined")


def _parse_witness(args: list[str], witnesses: Mapping[str, PolicyWitness],
                   groups: Mapping[str, Group]) -> PolicyWitness:
    if len(args) < 2:
        raise ValueError("witness needs a name and a verifier key")
    _new_name(args[0], witnesses, groups)
    key = CosignerKey.parse(args[1])
    if any(w.key.public_key == key.public_key for w in witnesses.values()):
        raise ValueError("duplicate witness key")
    if len(witnesses) >= MAX_WITNESSES:
        raise ValueError(f"more than {MAX_WITNESSES} witnesses")
    return PolicyWitness(args[0], key, _url(args, 2, "witness"))


def _parse_group(args: list[str], witnesses: Mapping[str, PolicyWitness],
                 groups: Mapping[str, Group]) -> Group:
    if len(args) < 3:
        raise ValueError("group needs a name, a threshold and at least one member")
    name, threshold_text, members = args[0], args[1], tuple(args[2:])
    _new_name(name, witnesses, groups)
    if len(groups) >= MAX_GROUPS:
        raise ValueError(f"more than {MAX_GROUPS} groups")
    for member in members:
        if member == NONE:
            raise ValueError("'none' cannot be a group member")
        if member not in witnesses and member not in groups:
            raise ValueError(f"group member {member!r} is not defined above")
    if len(set(members)) != len(members):
        raise ValueError("a name is listed twice in the group")
    if threshold_text == "all":
        threshold = len(members)
    elif threshold_text == "any":
        threshold = 1
    elif re.fullmatch(r"[1-9][0-9]{0,3}", threshold_text):
        threshold = int(threshold_text)
        if threshold > len(members):
            raise ValueError(f"threshold {threshold} exceeds the {len(members)} members")
    else:
        raise ValueError(f"threshold {threshold_text!r} is not all, any or a number >= 1")
    return Group(name, threshold, members)
