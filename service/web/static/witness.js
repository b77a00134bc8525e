// Witness cosignatures checked in this browser with WebCrypto, under a witness policy the
// auditor pinned: C2SP tlog-policy (the same file `evx --policy` reads, parsed by the same rules
// as custody/policy.py) and C2SP tlog-cosignature, type cosignature/v1 (Ed25519 over
// "cosignature/v1\ntime <t>\n" + the checkpoint body; key id SHA-256(name || "\n" || 0x04 ||
// key)[:4], as custody/cosignature.py). Errors carry a catalogue key and its values.
import { concat, equal, parseNote, strictBase64, verifyCheckpoint, verifyConsistency } from "./tlog.js";
import { fromHex, hex, sha256 } from "./sha256.js";
import { Problem } from "./problem.js";

export { Problem };

export const policySlot = `evx.pinned-policy:${location.origin}`;
export const MAX_POLICY_BYTES = 64 * 1024; // a policy names a few dozen keys: bound what we parse
const MAX_LOGS = 256, MAX_WITNESSES = 256, MAX_GROUPS = 256; // tlog-policy asks for >= 32
const MAX_TIMESTAMP = 2n ** 63n - 1n; // tlog-cosignature: a timestamp MUST NOT exceed 2^63 - 1
const ALG_NOTE = 0x01, ALG_COSIGNATURE = 0x04;
const NONE = "none";
const encoder = new TextEncoder();

const validName = (name) => name.length > 0 && !name.includes("+") && !/\s/.test(name);

// A vkey `<name>+<hex8 key id>+base64(alg || Ed25519 key)` whose key id matches.
export async function parseVkey(text, alg) {
  const first = text.indexOf("+"), second = text.indexOf("+", first + 1);
  if (first < 0 || second < 0) throw new Problem("custody.policy.bad_key", { key: text });
  const name = text.slice(0, first), id = text.slice(first + 1, second);
  if (!validName(name) || !/^[0-9a-f]{8}$/.test(id)) throw new Problem("custody.policy.bad_key", { key: text });
  let raw;
  try { raw = strictBase64(text.slice(second + 1)); } catch { throw new Problem("custody.policy.bad_key", { key: text }); }
  if (raw.length !== 33 || raw[0] !== alg) throw new Problem("custody.policy.bad_key_type", { key: text });
  const pub = raw.slice(1);
  const digest = await sha256(concat(encoder.encode(name), new Uint8Array([10, alg]), pub));
  if (hex(digest.slice(0, 4)) !== id) throw new Problem("custody.policy.bad_key_id", { key: text });
  return { name, id, pub, text };
}

// The policy file as custody/policy.py's Policy.parse reads it: {logs, witnesses (Map name ->
// key), groups (Map name -> {threshold, members}), quorum}. Throws a Problem naming the line.
export async function parsePolicy(text) {
  if (encoder.encode(text).length > MAX_POLICY_BYTES) throw new Problem("custody.policy.too_large", { bytes: MAX_POLICY_BYTES });
  const logs = [], witnesses = new Map(), groups = new Map();
  let quorum = null;
  const lines = text.split("\n");
  for (const [at, raw] of lines.entries()) {
    const line = at + 1;
    const fail = (key, values = {}) => new Problem(key, { line, ...values });
    if (/[\x00-\x08\x0b-\x1f\x7f]/.test(raw)) throw fail("custody.policy.control");
    const stripped = raw.replace(/^[ \t]+|[ \t]+$/g, "");
    if (!stripped || stripped.startsWith("#")) continue;
    const [kind, ...args] = stripped.split(/[ \t]+/);
    const url = (position) => {
      if (args.length > position + 1) throw fail("custody.policy.fields", { kind });
      return args[position] ?? null;
    };
    const key = async (position, alg) => {
      try { return await parseVkey(args[position], alg); } catch (error) { throw fail(error.key, error.values); }
    };
    const newName = (name) => {
      if (name === NONE) throw fail("custody.policy.none");
      if (witnesses.has(name) || groups.has(name)) throw fail("custody.policy.defined", { name });
    };
    if (kind === "log") {
      if (args.length < 1) throw fail("custody.policy.log_args");
      const vkey = await key(0, ALG_NOTE);
      if (logs.some((l) => equal(l.pub, vkey.pub))) throw fail("custody.policy.duplicate_key");
      if (logs.length >= MAX_LOGS) throw fail("custody.policy.too_many", { limit: MAX_LOGS, kind });
      logs.push({ ...vkey, url: url(1) });
    } else if (kind === "witness") {
      if (args.length < 2) throw fail("custody.policy.witness_args");
      newName(args[0]);
      const vkey = await key(1, ALG_COSIGNATURE);
      if ([...witnesses.values()].some((w) => equal(w.pub, vkey.pub))) throw fail("custody.policy.duplicate_key");
      if (witnesses.size >= MAX_WITNESSES) throw fail("custody.policy.too_many", { limit: MAX_WITNESSES, kind });
      witnesses.set(args[0], { ...vkey, url: url(2) });
    } else if (kind === "group") {
      if (args.length < 3) throw fail("custody.policy.group_args");
      const [name, thresholdText, ...members] = args;
      newName(name);
      if (groups.size >= MAX_GROUPS) throw fail("custody.policy.too_many", { limit: MAX_GROUPS, kind });
      for (const member of members) {
        if (member === NONE) throw fail("custody.policy.none_member");
        if (!witnesses.has(member) && !groups.has(member)) throw fail("custody.policy.undefined", { name: member });
      }
      if (new Set(members).size !== members.length) throw fail("custody.policy.twice");
      let threshold;
      if (thresholdText === "all") threshold = members.length;
      else if (thresholdText === "any") threshold = 1;
      else if (/^[1-9][0-9]{0,3}$/.test(thresholdText)) {
        threshold = Number(thresholdText);
        if (threshold > members.length) throw fail("custody.policy.threshold_high", { threshold, count: members.length });
      } else throw fail("custody.policy.threshold", { threshold: thresholdText });
      groups.set(name, { threshold, members });
    } else if (kind === "quorum") {
      if (quorum !== null) throw fail("custody.policy.quorum_twice");
      if (args.length !== 1) throw fail("custody.policy.quorum_args");
      if (args[0] !== NONE && !witnesses.has(args[0]) && !groups.has(args[0])) throw fail("custody.policy.undefined", { name: args[0] });
      quorum = args[0];
    } else {
      throw fail("custody.policy.unknown", { kind });
    }
  }
  if (quorum === null) throw new Problem("custody.policy.no_quorum");
  return { logs, witnesses, groups, quorum };
}

// Whether the witnesses named in `cosigned` (policy names) make the policy's quorum. Groups are
// evaluated once each: a policy of groups of groups costs linear time, not exponential.
export function isWitnessed(policy, cosigned) {
  const done = new Set(cosigned), memo = new Map();
  const satisfied = (name) => {
    if (name === NONE) return true;
    const group = policy.groups.get(name);
    if (!group) return done.has(name);
    if (!memo.has(name)) memo.set(name, group.members.filter(satisfied).length >= group.threshold);
    return memo.get(name);
  };
  return satisfied(policy.quorum);
}

// The quorum in words ("2 of W1, W2, W3"), with `t` the page's catalogue; a nested group is
// spelled out while the text stays short, else named.
export function describeQuorum(policy, t) {
  const describe = (name, depth) => {
    if (name === NONE) return t("custody.witness.quorum_none");
    const group = policy.groups.get(name);
    if (!group) return name;
    const members = group.members.map((m) => {
      if (!policy.groups.has(m)) return m;
      const inner = depth < 3 ? describe(m, depth + 1) : null; // as custody/policy.py
      return inner && inner.length <= 200 ? `(${inner})` : m;
    });
    return t("custody.witness.quorum_group", { threshold: group.threshold, members: members.join(", ") });
  };
  return describe(policy.quorum, 0);
}

// The policy witnesses that validly cosigned `note`, as a Map policy name -> timestamp (a
// decimal string). As custody/cosignature.py's verify_cosignatures: lines whose name and key id
// match no policy witness are ignored; one that matches and does not verify fails everything.
export async function verifyCosignatures(note, policy) {
  const { body, signatures } = parseNote(note);
  const found = new Map();
  for (const { name, id, raw } of signatures) {
    const entry = [...policy.witnesses.entries()].find(([, w]) => w.name === name && w.id === id);
    if (!entry) continue;
    const [policyName, witness] = entry;
    if (raw.length !== 8 + 64) throw new Problem("custody.witness.bad_cosignature", { name: policyName });
    const timestamp = new DataView(raw.buffer, raw.byteOffset, 8).getBigUint64(0);
    if (timestamp > MAX_TIMESTAMP) throw new Problem("custody.witness.bad_cosignature", { name: policyName });
    const message = encoder.encode(`cosignature/v1\ntime ${timestamp}\n${body}`);
    const publicKey = await crypto.subtle.importKey("raw", witness.pub, { name: "Ed25519" }, false, ["verify"]);
    if (!await crypto.subtle.verify({ name: "Ed25519" }, publicKey, raw.slice(8), message)) {
      throw new Problem("custody.witness.bad_cosignature", { name: policyName });
    }
    found.set(policyName, String(timestamp));
  }
  return found;
}

// A checkpoint under the policy: signed by the pinned log key (which must be one of the
// policy's logs), every policy witness's cosignature valid; {checkpoint, cosigned, met}.
export async function verifyUnderPolicy(note, policy, logKey) {
  if (!policy.logs.some((l) => l.name === logKey.name && equal(l.pub, logKey.pub))) {
    throw new Problem("custody.witness.log_not_in_policy");
  }
  const checkpoint = await verifyCheckpoint(note, logKey);
  const cosigned = await verifyCosignatures(note, policy);
  return { checkpoint, cosigned, met: isWitnessed(policy, cosigned.keys()) };
}

export const WITNESS_WAIT_MS = 30_000; // as the CLI's --witness-wait default
const POLL_MS = 1_000;
const sleep = (ms) => new Promise((done) => { setTimeout(done, ms); });

// As the CLI's witnessed_checkpoint: the hub's newest witnessed checkpoint, accepted under the
// policy, at least as large as `covering` (the checkpoint the entries were proven in) and
// provably extending it. The witnesses cosign in the background: wait up to WITNESS_WAIT_MS.
// Returns {state: "met", checkpoint, cosigned, met} or {state: "not-met", checkpoint, cosigned,
// met} (the last one seen); throws a Problem (or Error) when something does not verify. Stops
// waiting when `current()` turns false (the page started another check).
export async function witnessedCheckpoint(policy, logKey, covering, current, progress) {
  const deadline = Date.now() + WITNESS_WAIT_MS;
  let last = null;
  for (;;) {
    const response = await fetch("/v1/ledger/checkpoint", { credentials: "same-origin" });
    if (!response.ok) throw new Problem("custody.witness.http", { status: response.status });
    const result = await verifyUnderPolicy(await response.text(), policy, logKey);
    if (result.met && result.checkpoint.size >= covering.size) {
      await checkExtends(covering, result.checkpoint);
      return { state: "met", ...result };
    }
    last = result;
    progress(last);
    if (Date.now() >= deadline || !current()) break;
    await sleep(POLL_MS);
  }
  return { state: "not-met", cosigned: last.cosigned, checkpoint: last.checkpoint, met: last.met };
}

async function checkExtends(old, witnessed) {
  if (old.size === 0) return; // every tree extends the empty one
  if (old.size === witnessed.size) {
    if (!equal(old.root, witnessed.root)) throw new Problem("custody.witness.fork", { size: witnessed.size });
    return;
  }
  const response = await fetch(`/v1/ledger/proofs/consistency?from=${old.size}&to=${witnessed.size}`, { credentials: "same-origin" });
  if (!response.ok) throw new Problem("custody.witness.http", { status: response.status });
  const proof = (await response.json()).proof;
  if (!Array.isArray(proof) || !await verifyConsistency(old.size, witnessed.size, proof.map(fromHex), old.root, witnessed.root)) {
    throw new Problem("custody.witness.inconsistent", { old: old.size, size: witnessed.size });
  }
}
