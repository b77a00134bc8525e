// What the auditor pins in this browser, beside each other in local storage per hub: the log key
// and the witness policy (never taken from the hub). The forms of the custody and ledger pages
// and the witness line both pages show.
import { keySlot, parseKey } from "./tlog.js";
import { Problem, describeQuorum, parsePolicy, policySlot } from "./witness.js";

// An error as the page says it: a Problem through the catalogue, any other by its message.
export const saying = (t) => (error) => (error instanceof Problem ? t(error.key, error.values) : error.message);

const when = (timestamp) => `${new Date(Number(timestamp) * 1000).toISOString().slice(0, 19).replace("T", " ")} UTC`;

// "W1 at 2026-12-06 13:33:01 UTC, W2 at ..." for a Map policy name -> cosignature timestamp.
export const cosigners = (t, cosigned) => [...cosigned.entries()].sort(([a], [b]) => (a < b ? -1 : 1))
  .map(([name, time]) => t("custody.witness.by", { name, time: when(time) })).join(", ") || t("custody.witness.nobody");

// The witness line: state none | waiting | met | not-met | failed.
export function showWitness(state, text) {
  const element = document.getElementById("witness-state");
  element.textContent = text;
  element.className = { met: "ok", "not-met": "bad", failed: "bad" }[state] ?? "";
  element.dataset.state = state;
}

// The two pin forms; `verify` runs again after each pin. Invalid input is refused, never pinned.
export function setUpPins(t, verify) {
  const say = saying(t);
  const keyInput = document.getElementById("pinned-key");
  const keyState = document.getElementById("key-state");
  keyInput.value = localStorage.getItem(keySlot) || "";
  document.getElementById("pin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = keyInput.value.trim();
    try {
      parseKey(text);
    } catch (error) {
      keyState.textContent = t("custody.checkpoint.bad", { reason: say(error) });
      keyState.className = "bad";
      return;
    }
    localStorage.setItem(keySlot, text);
    keyState.textContent = "";
    keyState.className = "";
    verify();
  });

  const policyInput = document.getElementById("pinned-policy");
  const policyState = document.getElementById("policy-state");
  const describePinned = async () => {
    const text = localStorage.getItem(policySlot);
    policyInput.value = text || "";
    policyState.className = "";
    if (!text) {
      policyState.textContent = t("custody.policy.unpinned");
      return;
    }
    try {
      const policy = await parsePolicy(text);
      policyState.textContent = t("custody.policy.pinned", { logs: policy.logs.length, witnesses: policy.witnesses.size, quorum: describeQuorum(policy, t) });
    } catch (error) {
      policyState.textContent = t("custody.policy.bad", { reason: say(error) });
    }
  };
  document.getElementById("policy-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = policyInput.value;
    if (!text.trim()) {
      localStorage.removeItem(policySlot);
    } else {
      try {
        await parsePolicy(text);
      } catch (error) {
        policyState.textContent = t("custody.policy.bad", { reason: say(error) });
        policyState.className = "bad";
        return;
      }
      localStorage.setItem(policySlot, text);
    }
    await describePinned();
    verify();
  });
  describePinned();
}
