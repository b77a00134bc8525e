// The whole ledger, for the operator's auditors: the export streamed into this browser and
// verified as `evx ledger verify` does (docs/ledger-format.md section 7) -- every leaf hash, the
// hash chain, each package's chain, and the root over all leaves against the checkpoint signed
// by the pinned key. The newest entries are listed with their result.
import { RunningRoot, equal, keySlot, leafHash, parseKey, verifyCheckpoint } from "./tlog.js";
import { hex, messages } from "./sha256.js";

const root = document.getElementById("ledger");
const t = messages(root);
const SHOWN = 100; // newest entries listed on the page
const MAX_LINE = 132 * 1024;

async function* lines(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    pending += value;
    let cut;
    while ((cut = pending.indexOf("\n")) >= 0) {
      yield pending.slice(0, cut);
      pending = pending.slice(cut + 1);
    }
    if (pending.length > MAX_LINE) throw new Error("a line is too long");
  }
  if (pending) throw new Error("the export does not end with a newline");
}

function show(entry, reason) {
  const tr = document.createElement("tr");
  for (const text of [String(entry.index), entry.time, entry.action, entry.package ?? "",
    `${entry.actor.subject} (${entry.actor.role}, ${entry.actor.authority})`]) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.append(td);
  }
  const td = document.createElement("td");
  td.textContent = reason ? t("custody.entry.bad", { reason }) : t("custody.entry.ok");
  td.className = reason ? "bad" : "ok";
  tr.append(td);
  tr.dataset.verified = reason ? "no" : "yes";
  return tr;
}

async function verify() {
  const state = document.getElementById("ledger-state");
  const pinned = localStorage.getItem(keySlot);
  root.dataset.result = "running";
  if (!pinned) {
    state.textContent = t("custody.key.unpinned");
    state.className = "bad";
    root.dataset.result = "failed";
    return;
  }
  const failures = [];
  const shown = [];
  let count = 0, previous = null, checkpoint = null, ended = false;
  const running = new RunningRoot();
  const lastOfPackage = new Map();
  try {
    const response = await fetch("/v1/ledger/export", { credentials: "same-origin" });
    if (!response.ok) throw new Error((await response.json()).detail);
    let first = true;
    for await (const line of lines(response)) {
      if (ended) throw new Error("content after the checkpoint");
      const value = JSON.parse(line);
      if (first) { first = false; continue; } // the header
      if ("checkpoint" in value) {
        checkpoint = await verifyCheckpoint(value.checkpoint, parseKey(pinned));
        ended = true;
        continue;
      }
      const entry = value.entry;
      const leaf = await leafHash(entry);
      let reason = null;
      if (entry.index !== count) reason = "the entry is not at its index";
      else if (hex(leaf) !== value.leaf_hash) reason = "the entry's hash is not the one recorded";
      else if (entry.prev !== previous) reason = "the hash chain is broken here";
      else if (entry.package !== null && (lastOfPackage.get(entry.package) ?? null) !== entry.package_prev) reason = "the package chain is broken here";
      if (reason) failures.push(`${count}: ${reason}`);
      if (entry.package !== null) lastOfPackage.set(entry.package, hex(leaf));
      previous = hex(leaf);
      await running.add(leaf);
      shown.push([entry, reason]);
      if (shown.length > SHOWN) shown.shift();
      count += 1;
    }
    if (!checkpoint) throw new Error("the export has no checkpoint");
    if (checkpoint.size !== count) throw new Error(`the checkpoint covers ${checkpoint.size} entries, the export has ${count}`);
    if (!equal(await running.root(), checkpoint.root)) throw new Error("the root over the entries is not the signed root");
  } catch (error) {
    failures.push(error.message); // after the entries that failed before it
  }
  const body = document.querySelector("#ledger-entries tbody");
  body.replaceChildren(...shown.reverse().map(([entry, reason]) => show(entry, reason)));
  state.textContent = failures.length ? t("ledger.bad", { count, reason: failures[0] }) : t("ledger.ok", { count });
  state.className = failures.length ? "bad" : "ok";
  root.dataset.result = failures.length ? "failed" : "verified";
}

const input = document.getElementById("pinned-key");
input.value = localStorage.getItem(keySlot) || "";
document.getElementById("pin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  localStorage.setItem(keySlot, input.value.trim());
  verify();
});
verify();
