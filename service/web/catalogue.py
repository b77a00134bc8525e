"""Every text the web application shows, in one catalogue ready for translation.

Templates and scripts say ``t("key")``; scripts get the entries they need through the page's
``data-messages`` attribute (no inline script). A translation is another dictionary with the
same keys; ``tests/web/test_catalogue.py`` checks that every key used exists.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from markupsafe import Markup, escape

LANGUAGE = "en"

MESSAGES: dict[str, str] = {
    "app.name": "Evidence exchange",
    "nav.skip": "Skip to content",
    "nav.packages": "Packages",
    "nav.new": "New package",
    "nav.requests": "Requests",
    "nav.sign_out": "Sign out",
    "nav.signed_in_as": "Signed in as {subject} ({role}, {authority})",
    "sign_in.title": "Sign in",
    "sign_in.intro": "Sign in with your own authority's account. You are sent to its sign-in "
                     "page and come back here; this service never sees your password.",
    "sign_in.with": "Sign in with {name} ({authority}, {country})",
    "sign_in.none": "No authority has a sign-in service registered here yet: ask the hub's "
                    "operator.",
    "sign_in.failed": "Sign-in failed: {reason}",
    "sign_in.again": "Try again",
    "sign_in.continue": "Continue",
    "sign_in.done": "You are signed in.",
    "signed_out.title": "Signed out",
    "signed_out.body": "Your session here has ended.",
    "signed_out.provider": "Also sign out at your authority's sign-in service",
    "packages.title": "Packages",
    "packages.search": "Search title or case reference",
    "packages.filter": "Show",
    "packages.filter.all": "All packages",
    "packages.filter.owned": "Owned by my authority",
    "packages.filter.shared": "Shared with my authority",
    "packages.filter.draft": "Not sealed yet",
    "packages.sort": "Sort by",
    "packages.sort.newest": "Newest first",
    "packages.sort.oldest": "Oldest first",
    "packages.sort.title": "Title",
    "packages.apply": "Apply",
    "packages.empty": "No package matches.",
    "packages.count": "{count} packages",
    "col.title": "Title",
    "col.case": "Case reference",
    "col.owner": "Owner",
    "col.created": "Created",
    "col.state": "State",
    "col.items": "Items",
    "col.name": "Name",
    "col.size": "Size",
    "col.sha256": "SHA-256",
    "col.check": "Check",
    "col.authority": "Authority",
    "col.legal_basis": "Legal basis",
    "col.request_ref": "Request reference",
    "col.expires": "Expires",
    "col.action": "Action",
    "state.sealed": "Sealed",
    "state.draft": "Open (not sealed)",
    "state.shared_active": "Active",
    "state.shared_revoked": "Revoked",
    "state.shared_expired": "Expired",
    "new.title": "New package",
    "new.case": "Case reference",
    "new.title_field": "Title",
    "new.description": "Description (optional)",
    "new.create": "Create package",
    "package.owner": "Owned by {authority}, created by {subject} on {at}",
    "package.items": "Items",
    "package.no_items": "No items yet.",
    "package.upload": "Add files",
    "package.upload.help": "Drop files or a whole folder here, or choose them. Large files are "
                           "sent in parts: if the page is reloaded or the connection drops, "
                           "choose the same files again and the upload continues where it "
                           "stopped.",
    "package.upload.drop": "Drop files or folders here",
    "package.upload.files": "Choose files",
    "package.upload.folder": "Choose a folder",
    "package.upload.overall": "Overall progress",
    "package.upload.done": "All files uploaded. Reload the page to see them in the list.",
    "package.upload.reload": "Show the new items",
    "package.seal": "Seal",
    "package.seal.help": "Sealing freezes the package: its manifest (names, sizes and SHA-256 "
                         "of every item) is hashed into the custody ledger. Nothing can be "
                         "added afterwards.",
    "package.seal.button": "Seal this package",
    "package.manifest": "Manifest",
    "package.manifest.hash": "Manifest SHA-256",
    "package.sealed_at": "Sealed on {at}",
    "package.share": "Share",
    "package.share.authority": "Recipient authority",
    "package.share.legal_basis": "Legal basis",
    "package.share.request_ref": "Request reference",
    "package.share.expires": "Expires (optional, date and time in UTC)",
    "package.share.expires_local": "Expires (optional, date and time in your time zone, "
                                   "{zone})",
    "package.share.button": "Share this package",
    "package.shares": "Shares",
    "package.revoke": "Revoke",
    "package.shared_with_you": "Shared with your authority under {legal_basis} (request "
                               "{request_ref}){expiry}.",
    "package.expiry": ", until {at}",
    "package.download": "Download",
    "package.verify_all": "Download and check every item",
    "package.verify.help": "Checking downloads each item and computes its SHA-256 in this "
                           "browser, then compares it with the sealed manifest.",
    "package.custody": "Custody timeline",
    "package.folder": "Download as a folder",
    "package.folder.help": "Every item in one ZIP file, under a folder named after the "
                           "package, with their names as listed above (a name a computer "
                           "cannot store as it is, such as one with \":\" or a reserved "
                           "word, is given a safe spelling; the record inside says which). "
                           "Each item's download is put on the custody record as it starts.",
    "package.folder.button": "Download all items as a folder (ZIP)",
    "package.folder.started": "The download has started. When it has finished, extract the "
                              "ZIP file and check it as shown below.",
    "package.folder.check": "To check what you received, extract the ZIP file, then, in a "
                            "terminal:",
    "package.folder.commands": "cd {folder}\nsha256sum -c .evx/{package}/SHA256SUMS\n"
                               "evx verify .",
    "package.folder.record": "The folder .evx inside it holds the same download record as "
                             "evx download writes: every item's name, local name, size and "
                             "SHA-256, the package's custody record with its proofs, and "
                             "SHA256SUMS. evx verify checks all of it offline; compare the log "
                             "key in custody.json with the one you received from the hub's "
                             "operator.",
    "verify.pending": "Not checked",
    "verify.running": "Checking…",
    "verify.ok": "Verified: SHA-256 matches the sealed manifest",
    "verify.bad": "FAILED: the bytes received do not match the sealed manifest",
    "verify.error": "Could not check: {reason}",
    "verify.receipt": "Receipt recorded in the custody ledger (entry {index}): the manifest "
                      "computed in this browser {matches} the one sealed.",
    "verify.matches": "matches",
    "verify.differs": "DOES NOT match",
    "upload.waiting": "Waiting",
    "upload.hashing": "Re-reading the part already sent…",
    "upload.sending": "Sending",
    "upload.resumed": "Resumed at {offset} bytes",
    "upload.done": "Uploaded",
    "upload.exists": "Already in the package (same SHA-256)",
    "upload.differs": "Not uploaded: another file with this name is already in the package",
    "upload.failed": "Failed: {reason}",
    "custody.title": "Custody timeline",
    "custody.explain": "Each entry below is checked in this browser: its hash, its inclusion "
                       "proof (SHA-256, RFC 9162) in the log's tree, and the Ed25519 signature "
                       "of the checkpoint that tree was signed in, against the log key you "
                       "pinned. The service is not trusted for any of it.",
    "custody.independent": "The independent path is the command-line verifier on a machine "
                           "of your own: evx custody {package} --verify, or python -m custody "
                           "verify on an export.",
    "custody.key": "Pinned log key",
    "custody.key.help": "Paste the log key you received from the hub's operator out of band "
                        "(evx ledger key).",
    "custody.key.pin": "Pin this key",
    "custody.key.unpinned": "No log key pinned in this browser: nothing can be verified.",
    "custody.key.mismatch": "The log key the service uses is not the key you pinned.",
    "custody.checkpoint": "Checkpoint",
    "custody.checkpoint.ok": "Verified: signed by the pinned key, tree size {size}",
    "custody.checkpoint.bad": "FAILED: {reason}",
    "custody.summary.ok": "All {count} entries verified.",
    "custody.summary.bad": "{failed} of {count} entries FAILED verification: the record "
                           "served to this browser is not the one the log signed.",
    "custody.col.index": "Index",
    "custody.col.time": "Time",
    "custody.col.action": "Action",
    "custody.col.actor": "By",
    "custody.col.result": "Result",
    "custody.entry.ok": "Verified",
    "custody.entry.bad": "FAILED: {reason}",
    "custody.entry.unwitnessed": "NOT WITNESSED: in the log's signed checkpoint, not in one "
                                 "your policy's quorum of witnesses cosigned",
    "custody.summary.unwitnessed": "None of the {count} entries is verified: they are in the "
                                   "log's signed checkpoint, but no checkpoint holding them "
                                   "has the witness cosignatures your policy requires.",
    "custody.policy": "Pinned witness policy",
    "custody.policy.help": "Paste the witness policy your authority distributes (C2SP "
                           "tlog-policy: the log key, the witnesses' keys and the quorum; the "
                           "file evx --policy reads). Pin an empty policy to remove it.",
    "custody.policy.pin": "Pin this policy",
    "custody.policy.unpinned": "No witness policy pinned in this browser: checkpoints are "
                               "checked against the log key alone.",
    "custody.policy.pinned": "Pinned: {logs} log(s), {witnesses} witness(es), quorum "
                             "{quorum}.",
    "custody.policy.bad": "Not a valid witness policy, not pinned: {reason}",
    "custody.policy.too_large": "the policy is larger than {bytes} bytes",
    "custody.policy.control": "line {line}: control characters other than tab",
    "custody.policy.fields": "line {line}: too many fields on a {kind} line",
    "custody.policy.none": "line {line}: 'none' is predefined and cannot be redefined",
    "custody.policy.defined": "line {line}: the name {name} is already defined",
    "custody.policy.log_args": "line {line}: log needs a verifier key",
    "custody.policy.witness_args": "line {line}: witness needs a name and a verifier key",
    "custody.policy.group_args": "line {line}: group needs a name, a threshold and at least "
                                 "one member",
    "custody.policy.duplicate_key": "line {line}: duplicate key",
    "custody.policy.too_many": "line {line}: more than {limit} lines of type {kind}",
    "custody.policy.none_member": "line {line}: 'none' cannot be a group member",
    "custody.policy.undefined": "line {line}: {name} is not a witness or group defined above",
    "custody.policy.twice": "line {line}: a name is listed twice in the group",
    "custody.policy.threshold": "line {line}: threshold {threshold} is not all, any or a "
                                "number from 1",
    "custody.policy.threshold_high": "line {line}: threshold {threshold} exceeds the {count} "
                                     "members",
    "custody.policy.quorum_twice": "line {line}: a policy has exactly one quorum line",
    "custody.policy.quorum_args": "line {line}: quorum takes one name",
    "custody.policy.unknown": "line {line}: unknown line type {kind}",
    "custody.policy.no_quorum": "the policy has no quorum line",
    "custody.policy.bad_key": "line {line}: {key} is not a verifier key (name+id+key)",
    "custody.policy.bad_key_type": "line {line}: {key} is not an Ed25519 key of the right type "
                                   "(0x01 for a log, 0x04 for a witness's cosignature/v1)",
    "custody.policy.bad_key_id": "line {line}: the key id of {key} does not match its name "
                                 "and key",
    "custody.witness": "Witnesses",
    "custody.witness.explain": "With a witness policy pinned, entries are verified only in a "
                               "checkpoint that the quorum of your policy's witnesses "
                               "cosigned (C2SP cosignature/v1, Ed25519, checked in this "
                               "browser). Each witness cosigns a checkpoint only if it extends "
                               "every one it cosigned before, so the hub cannot show you a "
                               "history that others, or you earlier, did not see.",
    "custody.witness.none": "No witness policy pinned: not checked.",
    "custody.witness.waiting": "Waiting for the witnesses to cosign a checkpoint of at least "
                               "{size} entries (policy: {quorum})…",
    "custody.witness.waiting_seen": "Waiting for the witnesses: the newest witnessed "
                                    "checkpoint ({size} entries) is cosigned by {names} "
                                    "(policy: {quorum})…",
    "custody.witness.met": "Witnessed: the checkpoint of {size} entries, which extends the "
                           "one of {covered} these entries are proven in, is cosigned by "
                           "{names}. Quorum met (policy: {quorum}).",
    "custody.witness.not_witnessed": "NOT WITNESSED: {reason} Nothing below is verified: "
                                     "without the quorum your policy requires, the hub could "
                                     "be showing you a history others do not see.",
    "custody.witness.not_met": "the newest checkpoint ({size} entries) is cosigned by "
                               "{names}; quorum not met (policy: {quorum}).",
    "custody.witness.not_covering": "no checkpoint with the quorum covers the {covered} "
                                    "entries yet (the newest witnessed one has {size}).",
    "custody.witness.failed": "FAILED: {reason}",
    "custody.witness.by": "{name} at {time}",
    "custody.witness.nobody": "no witness of your policy",
    "custody.witness.quorum_none": "no witness cosignature",
    "custody.witness.quorum_group": "{threshold} of {members}",
    "custody.witness.bad_cosignature": "the cosignature by witness {name} does not verify",
    "custody.witness.log_not_in_policy": "the log key you pinned is not a log of your witness "
                                         "policy",
    "custody.witness.http": "the witnessed checkpoint could not be fetched (HTTP {status})",
    "custody.witness.fork": "FORK: the witnessed checkpoint of {size} entries has another "
                            "root than the one the entries are proven in",
    "custody.witness.inconsistent": "the witnessed checkpoint of {size} entries does not "
                                    "extend the one of {old} the entries are proven in",
    "custody.err.after_checkpoint": "content after the checkpoint",
    "custody.err.bad_signature": "the checkpoint signature does not verify with the pinned key",
    "custody.err.duplicate_signature": "duplicate signature",
    "custody.err.entry_hash": "the entry's hash is not the one recorded",
    "custody.err.entry_index": "the entry is not at its index",
    "custody.err.entry_package": "the entry is about another package",
    "custody.err.export_size": "the checkpoint covers {size} entries, the export has {count}",
    "custody.err.hash_chain": "the hash chain is broken here",
    "custody.err.inclusion": "the inclusion proof does not lead to the signed checkpoint",
    "custody.err.key_id": "the pinned key's id does not match its key",
    "custody.err.line_too_long": "a line is too long",
    "custody.err.no_checkpoint": "the export has no checkpoint",
    "custody.err.no_final_newline": "the export does not end with a newline",
    "custody.err.not_base64": "not base64",
    "custody.err.not_ed25519_key": "not an Ed25519 verifier key",
    "custody.err.not_hex": "not hex",
    "custody.err.not_integer": "not an integer",
    "custody.err.not_key": "not a verifier key (name+id+key)",
    "custody.err.not_note": "not a signed note",
    "custody.err.note_too_large": "the note is too large",
    "custody.err.other_log": "the checkpoint is for another log",
    "custody.err.package_chain": "the package chain is broken here",
    "custody.err.root": "the root over the entries is not the signed root",
    "custody.err.root_format": "malformed root",
    "custody.err.signature": "malformed signature",
    "custody.err.signature_line": "malformed signature line",
    "custody.err.too_many_signatures": "too many signature lines",
    "custody.err.tree_size": "the tree size differs from the checkpoint's",
    "custody.err.tree_size_format": "malformed tree size",
    "custody.err.unsigned": "the checkpoint is not signed by the pinned key",
    "custody.export": "Export as JSON",
    "custody.bundle.title": "Custody bundle",
    "custody.bundle.help": "A self-contained proof of this package's whole custody, for a "
                           "court or a partner: every entry with its inclusion proof in one "
                           "checkpoint that your pinned witness policy accepts (or, without "
                           "one, signed by your pinned log key), and the sealed manifest. The "
                           "hub makes it and checks it under your policy; check it yourself "
                           "with evx verify-bundle custody-bundle-{package}.json --policy "
                           "POLICY.",
    "custody.bundle": "Download the custody bundle",
    "custody.bundle.making": "Making the bundle…",
    "custody.bundle.saved": "Saved as {name}.",
    "custody.bundle.failed": "Could not make the bundle: {reason}",
    "custody.bundle.unpinned": "Pin a log key or a witness policy first: the bundle is made "
                               "under it.",
    "custody.loading": "Loading and verifying…",
    "custody.need_js": "Verification runs in this browser and needs JavaScript.",
    "nav.ledger": "Ledger",
    "ledger.title": "The whole ledger",
    "ledger.explain": "The hub's whole custody ledger, exported into this browser and checked "
                      "here: every entry's hash, the hash chain, each package's chain, and the "
                      "root over all entries against the checkpoint signed by the log key you "
                      "pinned. The newest entries are listed below.",
    "ledger.independent": "The independent path is evx ledger verify (or python -m custody "
                          "verify on the export file) on a machine of your own.",
    "ledger.ok": "Verified: all {count} entries, and their root is the one the pinned key "
                 "signed.",
    "ledger.bad": "FAILED after {count} entries: {reason}",
    "ledger.unwitnessed": "NOT verified: the {count} entries check against the log's signed "
                          "checkpoint, but it does not have the witness cosignatures your "
                          "policy requires.",
    "ledger.witness.met": "Witnessed: the checkpoint of {size} entries the export ends with is "
                          "cosigned by {names}. Quorum met (policy: {quorum}).",
    "ledger.col.package": "Package or request",
    "ledger.export": "Download the export (JSON Lines)",
    "ledger.operator_only": "The whole ledger is for the hub operator's auditors.",
    "requests.title": "Requests",
    "requests.intro": "Incoming and outgoing mutual legal assistance requests, next deadline "
                      "first (overdue at the top).",
    "requests.empty": "No requests.",
    "requests.col.reference": "Reference",
    "requests.col.direction": "Direction",
    "requests.col.partner": "Other authority",
    "requests.col.state": "State",
    "requests.col.next": "Next deadline",
    "requests.incoming": "Incoming",
    "requests.outgoing": "Outgoing",
    "requests.overdue": "OVERDUE",
    "request.title": "Request {reference}",
    "request.instrument": "Instrument",
    "request.offence": "Offence category",
    "request.measures": "Measures requested",
    "request.urgency": "Urgency",
    "request.filed": "Filed by",
    "request.deadlines": "Deadlines",
    "request.no_deadlines": "No deadline applies.",
    "request.col.milestone": "Milestone",
    "request.col.due": "Due",
    "request.col.when": "When",
    "request.col.by": "By",
    "request.col.note": "Note",
    "request.col.package": "Package",
    "request.met": "Met on {at}",
    "request.open": "Open",
    "request.lapsed": "Lapsed",
    "request.actions": "Next steps",
    "request.history": "History",
    "request.deliveries": "Packages delivered",
    "request.back": "Back to the requests",
    "request.unknown_step": "There is no such step for a request.",
    "request.until": "Postponed until (optional, date and time in UTC)",
    "request.step.acknowledge": "Acknowledge receipt",
    "request.step.acknowledge.help": "Tell the requesting authority the request was received.",
    "request.step.recognise": "Recognise",
    "request.step.recognise.help": "Recognise the request: it will be executed. After a "
                                   "postponement, this resumes it.",
    "request.step.ask": "Ask for information",
    "request.step.ask.help": "Ask the requesting authority for what you need to decide; the "
                             "request waits for their answer.",
    "request.step.ask.note": "What you need to know",
    "request.step.answer": "Send the answer",
    "request.step.answer.help": "Give the information the executing authority asked for.",
    "request.step.answer.note": "The information asked for",
    "request.step.refuse": "Refuse",
    "request.step.refuse.help": "Refuse to recognise or execute the request, with the grounds.",
    "request.step.refuse.note": "Grounds for refusal",
    "request.step.postpone": "Postpone",
    "request.step.postpone.help": "Postpone recognition or execution, with the grounds; "
                                  "recognise resumes it.",
    "request.step.postpone.note": "Grounds for postponement",
    "request.step.execute-partly": "Mark executed in part",
    "request.step.execute-partly.help": "Part of the request is executed; more is to come.",
    "request.step.execute-partly.note": "Note (optional)",
    "request.step.fulfil": "Mark executed in full",
    "request.step.fulfil.help": "The request is executed in full.",
    "request.step.fulfil.note": "Note (optional)",
    "request.step.withdraw": "Withdraw",
    "request.step.withdraw.help": "Withdraw this request.",
    "request.deliver": "Deliver this package",
    "request.deliver.help": "Share one of your authority's sealed packages with the requesting "
                            "authority as (part of) the answer; the share takes the request's "
                            "legal basis and reference.",
    "request.deliver.package": "Sealed package",
    "request.deliver.none": "Your authority has no sealed package to deliver yet.",
    "notices.title": "Notices",
    "notices.empty": "Nothing new.",
    "notice.share.created": "{owner_authority} shared a package with your authority under "
                            "{legal_basis} (request {request_reference}).",
    "notice.share.revoked": "{owner_authority} revoked the share of a package with your "
                            "authority.",
    "notice.share.expiring": "The share of a package with {authority} expires on {expires_at}.",
    "notice.share.expired": "The share of a package with {authority} expired on {expires_at}.",
    "notice.package.downloaded": "{subject} ({authority}) downloaded {item}.",
    "notice.request": "Request {reference}: {event}.",
    "notice.other": "{event}.",
    "notice.open": "Open the package",
    "error.title": "Something went wrong",
    "error.back": "Back to the packages",
    "error.csrf": "This form was not sent by this page (missing or wrong security token). "
                  "Reload the page and try again.",
    "error.signed_out": "Your session has ended: sign in again.",
    "error.throttled": "Too many requests from you: wait {seconds} s and reload the page.",
    "size.bytes": "{n} bytes",
}


def t(key: str, **values: Any) -> str:
    """The text of ``key`` with ``values`` filled in (escaping is the template's job).

    When a value is markup (a date's ``<time>`` element), the text and every other value are
    escaped here and the result is markup, so the element stays an element and nothing else
    can become one."""
    text = MESSAGES[key]
    if any(isinstance(v, Markup) for v in values.values()):
        return Markup(escape(text)).format(**values)
    return text.format(**values) if values else text


def shown(text: str) -> str:
    """``text`` with every control or formatting character made visible as ``⟨U+XXXX⟩``: a
    bidi override or a newline in an item name must not reorder or split what an officer
    reads (a right-to-left override turns "txt.exe" into "exe.txt"). HTML escaping comes
    after, in the template."""
    return "".join(f"⟨U+{ord(c):04X}⟩" if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")
                   else c for c in text)
