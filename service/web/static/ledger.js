// The whole ledger, for the operator's auditors: the export streamed into this browser and
// verified as `evx ledger verify` does (docs/ledger-format.md section 7) -- every leaf hash, the
// hash chain, each package's chain, and the root over all leaves against the checkpoint signed
// by the pinned key. The newest entries are listed with their result. With a witness policy
// pinned, the export is asked under the newest witnessed checkpoint and is verified only if
// that checkpoint has the policy's quorum (as `evx ledger export --policy`).
import { RunningRoot, equal, keySlot, leafHash, parseKey, verifyCheckpoint } from "./tlog.js";
import { hex, messages } from "./sha256.js";
import { describeQuorum, parsePolicy, policySlot, verifyUnderPolicy } from "./witness.js";
import { cosigners, saying, setUpPins, showWitness } from "./pins.js";
import { Problem } from "./problem.js";

const root = document.getElementById("ledger");
const t = messages(root);
const say = saying(t);
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
    if (pending.length > MAX_LINE) throw new Problem("custody.err.line_too_long");
  }
  if (pending) throw new Problem("custody.err.no_final_newline");
}

function show(entry, reason, unwitnessed) {
  const tr = document.createElement("tr");
  for (const text of [String(entry.index), entry.time, entry.action, entry.package ?? "",
    `${entry.actor.subject} (${entry.actor.role}, ${entry.actor.authority})`]) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.append(td);
  }
  const td = document.createElement("td");
  td.textContent = reason ? t("custody.entry.bad", { reason })
    : unwitnessed ? t("custody.entry.unwitnessed") : t("custody.entry.ok");
  td.className = reason || unwitnessed ? "bad" : "ok";
  tr.append(td);
  tr.dataset.verified = reason || unwitnessed ? "no" : "yes";
  return tr;
}

let runs = 0; // a pin while a check runs starts another; only the newest writes the page

async function verify() {
  const mine = ++runs;
  const state = document.getElementById("ledger-state");
  const pinned = localStorage.getItem(keySlot);
  const policyText = localStorage.getItem(policySlot);
  root.dataset.result = "running";
  showWitness(policyText ? "waiting" : "none", t(policyText ? "custody.loading" : "custody.witness.none"));
  if (!pinned) {
    state.textContent = t("custody.key.unpinned");
    state.className = "bad";
    root.dataset.result = "failed";
    return;
  }
  const failures = [];
  const shown = [];
  let count = 0, previous = null, checkpoint = null, ended = false, unwitnessed = false, judged = false;
  const running = new RunningRoot();
  const lastOfPackage = new Map();
  try {
    const policy = policyText ? await parsePolicy(policyText) : null;
    const response = await fetch(policy ? "/v1/ledger/export?witnessed=true" : "/v1/ledger/export", { credentials: "same-origin" });
    if (!response.ok) throw new Error((await response.json()).detail);
    let first = true;
    for await (const line of lines(response)) {
      if (ended) throw new Problem("custody.err.after_checkpoint");
      const value = JSON.parse(line);
      if (first) { first = false; continue; } // the header
      if ("checkpoint" in value) {
        checkpoint = await verifyCheckpoint(value.checkpoint, parseKey(pinned));
        ended = true;
        if (policy) {
          const result = await verifyUnderPolicy(value.checkpoint, policy, parseKey(pinned));
          const values = { size: result.checkpoint.size, names: cosigners(t, result.cosigned), quorum: describeQuorum(policy, t) };
          unwitnessed = !result.met;
          judged = true;
          if (result.met) showWitness("met", t("ledger.witness.met", values));
          else showWitness("not-met", t("custody.witness.not_witnessed", { reason: t("custody.witness.not_met", values) }));
        }
        continue;
      }
      const entry = value.entry;
      const leaf = await leafHash(entry);
      let reason = null;
      if (entry.index !== count) reason = t("custody.err.entry_index");
      else if (hex(leaf) !== value.leaf_hash) reason = t("custody.err.entry_hash");
      else if (entry.prev !== previous) reason = t("custody.err.hash_chain");
      else if (entry.package !== null && (lastOfPackage.get(entry.package) ?? null) !== entry.package_prev) reason = t("custody.err.package_chain");
      if (reason) failures.push(`${count}: ${reason}`);
      if (entry.package !== null) lastOfPackage.set(entry.package, hex(leaf));
      previous = hex(leaf);
      await running.add(leaf);
      shown.push([entry, reason]);
      if (shown.length > SHOWN) shown.shift();
      count += 1;
    }
    if (!checkpoint) throw new Problem("custody.err.no_checkpoint");
    if (checkpoint.size !== count) throw new Problem("custody.err.export_size", { size: checkpoint.size, count });
    if (!equal(await running.root(), checkpoint.root)) throw new Problem("custody.err.root");
  } catch (error) {
    failures.push(say(error)); // after the entries that failed before it
    if (policyText && !judged) showWitness("failed", t("custody.witness.failed", { reason: say(error) }));
  }
  if (mine !== runs) return;
  const body = document.querySelector("#ledger-entries tbody");
  body.replaceChildren(...shown.reverse().map(([entry, reason]) => show(entry, reason, unwitnessed)));
  state.textContent = failures.length ? t("ledger.bad", { count, reason: failures[0] })
    : unwitnessed ? t("ledger.unwitnessed", { count }) : t("ledger.ok", { count });
  state.className = failures.length || unwitnessed ? "bad" : "ok";
  root.dataset.result = failures.length ? "failed" : unwitnessed ? "not-witnessed" : "verified";
}

setUpPins(t, verify);
verify();
