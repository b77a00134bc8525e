// The custody timeline, verified in this browser against the log key the auditor pinned:
// the checkpoint's Ed25519 signature (C2SP signed note), each entry's leaf hash over its RFC 8785
// canonical bytes, its RFC 9162 inclusion proof to the checkpoint's root, and the package chain.
// Nothing the service says is believed without one of these checks (docs/ledger-format.md).
import { canonical } from "./canonical.js";
import { fromBase64, fromHex, hex, messages, sha256 } from "./sha256.js";

const root = document.getElementById("custody");
const t = messages(root);
const packageId = root.dataset.package;
const keySlot = `evx.pinned-log-key:${location.origin}`;
const encoder = new TextEncoder();

const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
};
const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

const leafHash = async (entry) => sha256(concat(new Uint8Array([0]), encoder.encode(canonical(entry))));
const nodeHash = (l, r) => sha256(concat(new Uint8Array([1]), l, r));

// RFC 9162 section 2.1.3.2, with indices as plain numbers (< 2^53).
async function rootFromInclusion(index, size, leaf, proof) {
  if (index >= size || proof.length > 64) return null;
  let fn = index, sn = size - 1, r = leaf;
  for (const p of proof) {
    if (p.length !== 32 || sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      r = await nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : null;
}

function parseKey(text) {
  const first = text.indexOf("+"), second = text.indexOf("+", first + 1);
  if (first < 1 || second < 0) throw new Error("not a verifier key (name+id+key)");
  const name = text.slice(0, first), id = text.slice(first + 1, second);
  const raw = fromBase64(text.slice(second + 1));
  if (!/^[0-9a-f]{8}$/.test(id) || raw.length !== 33 || raw[0] !== 1) throw new Error("not an Ed25519 verifier key");
  return { name, id, pub: raw.slice(1) };
}

// C2SP signed note with the pinned key; returns {size, root} of the checkpoint body.
async function verifyCheckpoint(note, key) {
  const computedId = hex((await sha256(concat(encoder.encode(key.name), new Uint8Array([10, 1]), key.pub))).slice(0, 4));
  if (computedId !== key.id) throw new Error("the pinned key's id does not match its key");
  const split = note.lastIndexOf("\n\n");
  if (split < 0 || !note.endsWith("\n")) throw new Error("not a signed note");
  const body = note.slice(0, split + 1);
  const lines = note.slice(split + 2, -1).split("\n");
  const publicKey = await crypto.subtle.importKey("raw", key.pub, { name: "Ed25519" }, false, ["verify"]);
  let verified = 0;
  const seen = new Set();
  for (const line of lines) {
    const match = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!match) throw new Error("malformed signature line");
    const raw = fromBase64(match[2]);
    const id = hex(raw.slice(0, 4));
    if (seen.has(`${match[1]} ${id}`)) throw new Error("duplicate signature");
    seen.add(`${match[1]} ${id}`);
    if (match[1] !== key.name || id !== key.id) continue; // a witness or another key
    if (raw.length !== 68) throw new Error("malformed signature");
    const ok = await crypto.subtle.verify({ name: "Ed25519" }, publicKey, raw.slice(4), encoder.encode(body));
    if (!ok) throw new Error("the checkpoint signature does not verify with the pinned key");
    verified += 1;
  }
  if (!verified) throw new Error("the checkpoint is not signed by the pinned key");
  const [origin, size, rootText] = body.split("\n");
  if (origin !== key.name) throw new Error("the checkpoint is for another log");
  if (!/^(0|[1-9][0-9]*)$/.test(size)) throw new Error("malformed tree size");
  const treeRoot = fromBase64(rootText);
  if (treeRoot.length !== 32) throw new Error("malformed root");
  return { size: Number(size), root: treeRoot };
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
