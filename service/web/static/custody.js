// The custody timeline, verified in this browser against the log key the auditor pinned:
// the checkpoint's Ed25519 signature (C2SP signed note), each entry's leaf hash over its RFC 8785
// canonical bytes, its RFC 9162 inclusion proof to the checkpoint's root, and the package chain;
// with a witness policy pinned, also a checkpoint that extends that one and carries the quorum
// of witness cosignatures the policy requires (witness.js), as `evx custody --policy` does.
// Nothing the service says is believed without one of these checks (docs/ledger-format.md).
import { equal, keySlot, leafHash, parseKey, rootFromInclusion, verifyCheckpoint } from "./tlog.js";
import { fromHex, hex, messages } from "./sha256.js";
import { describeQuorum, parsePolicy, policySlot, witnessedCheckpoint } from "./witness.js";
import { cosigners, saying, setUpPins, showWitness } from "./pins.js";
import { Problem } from "./problem.js";

const root = document.getElementById("custody");
const t = messages(root);
const packageId = root.dataset.package;

const say = saying(t);

// With a policy pinned: {failure} when something does not verify, {unwitnessed} when the quorum
// was not reached, {} when a checkpoint with the quorum extends the one the entries are in.
async function witnesses(policyText, pinned, checkpoint, failure, current) {
  const show = (state, text) => { if (current()) showWitness(state, text); };
  if (!policyText) {
    show("none", t("custody.witness.none"));
    return {};
  }
  try {
    const policy = await parsePolicy(policyText);
    const quorum = describeQuorum(policy, t);
    if (!checkpoint) {
      show("failed", t("custody.witness.failed", { reason: failure }));
      return { failure };
    }
    show("waiting", t("custody.witness.waiting", { size: checkpoint.size, quorum }));
    const result = await witnessedCheckpoint(policy, parseKey(pinned), checkpoint, current, (seen) => {
      show("waiting", t("custody.witness.waiting_seen", { size: seen.checkpoint.size, names: cosigners(t, seen.cosigned), quorum }));
    });
    const values = { size: result.checkpoint.size, names: cosigners(t, result.cosigned), quorum, covered: checkpoint.size };
    if (result.state === "met") {
      show("met", t("custody.witness.met", values));
      return {};
    }
    const reason = result.met ? t("custody.witness.not_covering", values) : t("custody.witness.not_met", values);
    show("not-met", t("custody.witness.not_witnessed", { reason }));
    return { unwitnessed: reason };
  } catch (error) {
    const reason = say(error);
    show("failed", t("custody.witness.failed", { reason }));
    return { failure: reason };
  }
}

function row(entry, result, reason) {
  const tr = document.createElement("tr");
  const cells = [String(entry.index ?? "?"), entry.time ?? "", entry.action ?? "",
    entry.actor ? `${entry.actor.subject} (${entry.actor.role}, ${entry.actor.authority})` : ""];
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = text; // text, never markup
    tr.append(td);
  }
  const td = document.createElement("td");
  td.textContent = result === true ? t("custody.entry.ok") : result === null
    ? t("custody.entry.unwitnessed") : t("custody.entry.bad", { reason });
  td.className = result === true ? "ok" : "bad";
  tr.append(td);
  tr.dataset.verified = result === true ? "yes" : "no";
  return tr;
}

let runs = 0; // a pin while a check runs starts another; only the newest writes the page

async function verify() {
  const mine = ++runs;
  const current = () => mine === runs;
  const state = document.getElementById("checkpoint-state");
  const summary = document.getElementById("custody-summary");
  const body = document.querySelector("#timeline tbody");
  body.replaceChildren();
  summary.textContent = "";
  root.dataset.result = "running";
  const pinned = localStorage.getItem(keySlot);
  const policyText = localStorage.getItem(policySlot);
  showWitness("waiting", t("custody.loading"));
  const response = await fetch(`/v1/packages/${encodeURIComponent(packageId)}/custody`, { credentials: "same-origin" });
  if (!response.ok) {
    let detail = `HTTP ${response.status}`;
    try { detail = (await response.json()).detail; } catch { /* keep the status */ }
    state.textContent = t("custody.checkpoint.bad", { reason: detail });
    state.className = "bad";
    showWitness("failed", t("custody.witness.failed", { reason: detail }));
    root.dataset.result = "failed";
    return;
  }
  const record = await response.json();
  if (!current()) return;
  let checkpoint = null, failure = null;
  if (!pinned) {
    failure = t("custody.key.unpinned");
  } else if (pinned !== record.verifier_key) {
    failure = t("custody.key.mismatch");
  } else {
    try {
      checkpoint = await verifyCheckpoint(record.checkpoint, parseKey(pinned));
      if (checkpoint.size !== record.tree_size) throw new Problem("custody.err.tree_size");
    } catch (error) {
      failure = say(error);
      checkpoint = null;
    }
  }
  state.textContent = checkpoint ? t("custody.checkpoint.ok", { size: checkpoint.size }) : t("custody.checkpoint.bad", { reason: failure });
  state.className = checkpoint ? "ok" : "bad";
  const witnessed = await witnesses(policyText, pinned, checkpoint, failure, current);
  if (!current()) return;
  let previous = null, failed = 0, unwitnessed = 0;
  for (const [position, proven] of record.entries.entries()) {
    const entry = proven.entry;
    let reason = null, leaf = null;
    try {
      leaf = await leafHash(entry);
      if (hex(leaf) !== proven.leaf_hash) reason = t("custody.err.entry_hash");
      else if (entry.index !== proven.index) reason = t("custody.err.entry_index");
      else if (entry.package !== packageId) reason = t("custody.err.entry_package");
      else if ((position === 0 ? null : previous) !== entry.package_prev) reason = t("custody.err.package_chain");
      else if (!checkpoint) reason = failure;
      else {
        const computed = await rootFromInclusion(entry.index, checkpoint.size, leaf, proven.inclusion_proof.map(fromHex));
        if (!computed || !equal(computed, checkpoint.root)) reason = t("custody.err.inclusion");
        else if (witnessed.failure) reason = witnessed.failure;
      }
    } catch (error) {
      reason = say(error);
    }
    // The next entry must link to this one as recorded: a tampered entry fails on its own
    // hash, and an entry left out breaks the link of the one after it.
    if (!current()) return;
    previous = proven.leaf_hash;
    if (reason) failed += 1;
    else if (witnessed.unwitnessed) unwitnessed += 1;
    // Never "verified" under a policy whose quorum was not met: such an entry is shown as
    // proven in the log's checkpoint, not witnessed.
    body.append(row(entry, reason ? false : witnessed.unwitnessed ? null : true, reason ?? witnessed.unwitnessed));
  }
  const count = record.entries.length;
  summary.textContent = failed ? t("custody.summary.bad", { failed, count })
    : unwitnessed ? t("custody.summary.unwitnessed", { count }) : t("custody.summary.ok", { count });
  summary.className = failed || unwitnessed ? "bad" : "ok";
  root.dataset.result = failed ? "failed" : unwitnessed ? "not-witnessed" : "verified";
}

setUpPins(t, verify);
verify();
