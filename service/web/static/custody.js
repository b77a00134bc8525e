// The custody timeline, verified in this browser against the log key the auditor pinned:
// the checkpoint's Ed25519 signature (C2SP signed note), each entry's leaf hash over its RFC 8785
// canonical bytes, its RFC 9162 inclusion proof to the checkpoint's root, and the package chain.
// Nothing the service says is believed without one of these checks (docs/ledger-format.md).
import { equal, keySlot, leafHash, parseKey, rootFromInclusion, verifyCheckpoint } from "./tlog.js";
import { fromHex, hex, messages } from "./sha256.js";

const root = document.getElementById("custody");
const t = messages(root);
const packageId = root.dataset.package;

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
  td.textContent = result ? t("custody.entry.ok") : t("custody.entry.bad", { reason });
  td.className = result ? "ok" : "bad";
  tr.append(td);
  tr.dataset.verified = result ? "yes" : "no";
  return tr;
}

async function verify() {
  const state = document.getElementById("checkpoint-state");
  const summary = document.getElementById("custody-summary");
  const body = document.querySelector("#timeline tbody");
  body.replaceChildren();
  summary.textContent = "";
  root.dataset.result = "running";
  const pinned = localStorage.getItem(keySlot);
  const response = await fetch(`/v1/packages/${encodeURIComponent(packageId)}/custody`, { credentials: "same-origin" });
  if (!response.ok) {
    let detail = `HTTP ${response.status}`;
    try { detail = (await response.json()).detail; } catch { /* keep the status */ }
    state.textContent = t("custody.checkpoint.bad", { reason: detail });
    state.className = "bad";
    root.dataset.result = "failed";
    return;
  }
  const record = await response.json();
  let checkpoint = null, failure = null;
  if (!pinned) {
    failure = t("custody.key.unpinned");
  } else if (pinned !== record.verifier_key) {
    failure = t("custody.key.mismatch");
  } else {
    try {
      checkpoint = await verifyCheckpoint(record.checkpoint, parseKey(pinned));
      if (checkpoint.size !== record.tree_size) throw new Error("the tree size differs from the checkpoint's");
    } catch (error) {
      failure = error.message;
      checkpoint = null;
    }
  }
  state.textContent = checkpoint ? t("custody.checkpoint.ok", { size: checkpoint.size }) : t("custody.checkpoint.bad", { reason: failure });
  state.className = checkpoint ? "ok" : "bad";
  let previous = null, failed = 0;
  for (const [position, proven] of record.entries.entries()) {
    const entry = proven.entry;
    let reason = null, leaf = null;
    try {
      leaf = await leafHash(entry);
      if (hex(leaf) !== proven.leaf_hash) reason = "the entry's hash is not the one recorded";
      else if (entry.index !== proven.index) reason = "the entry is not at its index";
      else if (entry.package !== packageId) reason = "the entry is about another package";
      else if ((position === 0 ? null : previous) !== entry.package_prev) reason = "the package chain is broken here";
      else if (!checkpoint) reason = failure;
      else {
        const computed = await rootFromInclusion(entry.index, checkpoint.size, leaf, proven.inclusion_proof.map(fromHex));
        if (!computed || !equal(computed, checkpoint.root)) reason = "the inclusion proof does not lead to the signed checkpoint";
      }
    } catch (error) {
      reason = error.message;
    }
    // The next entry must link to this one as recorded: a tampered entry fails on its own
    // hash, and an entry left out breaks the link of the one after it.
    previous = proven.leaf_hash;
    if (reason) failed += 1;
    body.append(row(entry, !reason, reason));
  }
  const count = record.entries.length;
  summary.textContent = failed ? t("custody.summary.bad", { failed, count }) : t("custody.summary.ok", { count });
  summary.className = failed ? "bad" : "ok";
  root.dataset.result = failed ? "failed" : "verified";
}

const input = document.getElementById("pinned-key");
input.value = localStorage.getItem(keySlot) || "";
document.getElementById("pin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = input.value.trim();
  try {
    parseKey(text);
    localStorage.setItem(keySlot, text);
  } catch (error) {
    document.getElementById("checkpoint-state").textContent = t("custody.checkpoint.bad", { reason: error.message });
    return;
  }
  verify();
});
verify();
