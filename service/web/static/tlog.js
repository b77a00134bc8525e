// Transparency-log verification shared by the custody and ledger pages (docs/ledger-format.md):
// leaf hashes over RFC 8785 bytes, RFC 9162 inclusion proofs and tree roots, and C2SP signed
// notes checked with WebCrypto Ed25519 against the key the auditor pinned.
import { canonical } from "./canonical.js";
import { fromBase64, hex, sha256 } from "./sha256.js";
import { Problem } from "./problem.js";

export const keySlot = `evx.pinned-log-key:${location.origin}`;
const encoder = new TextEncoder();

export const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
};
export const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

export const leafHash = async (entry) => sha256(concat(new Uint8Array([0]), encoder.encode(canonical(entry))));
export const nodeHash = (l, r) => sha256(concat(new Uint8Array([1]), l, r));

// RFC 9162 section 2.1.3.2, with indices as plain numbers (< 2^53).
export async function rootFromInclusion(index, size, leaf, proof) {
  if (index >= size || leaf.length !== 32 || proof.length > 64) return null;
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

export function parseKey(text) {
  const first = text.indexOf("+"), second = text.indexOf("+", first + 1);
  if (first < 1 || second < 0) throw new Problem("custody.err.not_key");
  const name = text.slice(0, first), id = text.slice(first + 1, second);
  const raw = fromBase64(text.slice(second + 1));
  if (!/^[0-9a-f]{8}$/.test(id) || raw.length !== 33 || raw[0] !== 1) throw new Problem("custody.err.not_ed25519_key");
  return { name, id, pub: raw.slice(1) };
}

const MAX_NOTE_BYTES = 64 * 1024; // as custody/note.py: checkpoints are well under 1 KiB
const MAX_SIGNATURES = 100; // as Go's note.Open

// A C2SP signed note split into its body (with the final newline) and its signature lines,
// not verified: [{name, id (8 hex digits), raw (the bytes after the key id)}]. Two lines with
// the same name and key id make the note malformed (as Go's note.Open).
export function parseNote(note) {
  if (note.length > MAX_NOTE_BYTES) throw new Problem("custody.err.note_too_large");
  const split = note.lastIndexOf("\n\n");
  if (split < 0 || !note.endsWith("\n")) throw new Problem("custody.err.not_note");
  const body = note.slice(0, split + 1);
  const lines = note.slice(split + 2, -1).split("\n");
  if (lines.length > MAX_SIGNATURES) throw new Problem("custody.err.too_many_signatures");
  const signatures = [];
  const seen = new Set();
  for (const line of lines) {
    const match = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!match) throw new Problem("custody.err.signature_line");
    const raw = strictBase64(match[2]);
    if (raw.length < 5) throw new Problem("custody.err.signature");
    const id = hex(raw.slice(0, 4));
    if (seen.has(`${match[1]} ${id}`)) throw new Problem("custody.err.duplicate_signature");
    seen.add(`${match[1]} ${id}`);
    signatures.push({ name: match[1], id, raw: raw.slice(4) });
  }
  return { body, signatures };
}

// Base64 with padding, nothing else (atob alone also takes spaces and missing padding).
export function strictBase64(text) {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) throw new Problem("custody.err.not_base64");
  return fromBase64(text);
}

// The note's body when it carries a valid signature by `key` (an Ed25519 verifier key as
// parseKey returns it); every line by that key must verify.
export async function verifyNote(note, key) {
  const computedId = hex((await sha256(concat(encoder.encode(key.name), new Uint8Array([10, 1]), key.pub))).slice(0, 4));
  if (computedId !== key.id) throw new Problem("custody.err.key_id");
  const { body, signatures } = parseNote(note);
  const publicKey = await crypto.subtle.importKey("raw", key.pub, { name: "Ed25519" }, false, ["verify"]);
  let verified = 0;
  for (const { name, id, raw } of signatures) {
    if (name !== key.name || id !== key.id) continue; // a witness or another key
    if (raw.length !== 64) throw new Problem("custody.err.signature");
    const ok = await crypto.subtle.verify({ name: "Ed25519" }, publicKey, raw, encoder.encode(body));
    if (!ok) throw new Problem("custody.err.bad_signature");
    verified += 1;
  }
  if (!verified) throw new Problem("custody.err.unsigned");
  return body;
}

// C2SP signed note with the pinned key; returns {size, root, body} of the checkpoint.
export async function verifyCheckpoint(note, key) {
  const body = await verifyNote(note, key);
  const [origin, size, rootText] = body.split("\n");
  if (origin !== key.name) throw new Problem("custody.err.other_log");
  if (!/^(0|[1-9][0-9]*)$/.test(size) || !Number.isSafeInteger(Number(size))) throw new Problem("custody.err.tree_size_format");
  const treeRoot = strictBase64(rootText ?? "");
  if (treeRoot.length !== 32) throw new Problem("custody.err.root_format");
  return { size: Number(size), root: treeRoot, body };
}

// RFC 9162 section 2.1.4.2: whether `proof` shows that the tree of size2 (root2) extends the
// tree of size1 (root1). As the project's Python (custody/merkle.py) and the RFC 6962 vectors:
// equal sizes need an empty proof and equal roots; a proof from size 0 is refused.
export async function verifyConsistency(size1, size2, proof, root1, root2) {
  if (size1 === 0 || size1 > size2) return false;
  if (size1 === size2) return proof.length === 0 && equal(root1, root2);
  if (root1.length !== 32 || root2.length !== 32) return false;
  if (!proof.length || proof.length > 64 || proof.some((p) => p.length !== 32)) return false;
  let odd = size1;
  while (odd % 2 === 0) odd /= 2;
  const path = odd === 1 ? [root1, ...proof] : proof; // a power of two: its root comes first
  let fn = size1 - 1, sn = size2 - 1;
  while (fn % 2 === 1) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
  let fr = path[0], sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
  }
  return sn === 0 && equal(fr, root1) && equal(sr, root2);
}

// RFC 9162 tree head over leaf hashes added one by one, in O(log n) memory
// (docs/ledger-format.md section 3).
export class RunningRoot {
  constructor() { this.stack = []; this.size = 0; }

  async add(leaf) {
    let node = leaf;
    for (let n = this.size; n % 2 === 1; n = Math.floor(n / 2)) node = await nodeHash(this.stack.pop(), node);
    this.stack.push(node);
    this.size += 1;
  }

  async root() {
    if (!this.stack.length) return sha256(new Uint8Array(0));
    let node = this.stack[this.stack.length - 1];
    for (let i = this.stack.length - 2; i >= 0; i--) node = await nodeHash(this.stack[i], node);
    return node;
  }
}
