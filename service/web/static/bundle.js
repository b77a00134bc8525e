// The custody page's "Download the custody bundle": the hub makes the package's bundle under
// the witness policy pinned in this browser (or, without one, the pinned log key alone: the
// policy "log KEY / quorum none") and checks it under that policy before sending it; the
// auditor checks it again on a machine of their own (evx verify-bundle FILE --policy POLICY).
import { messages } from "./sha256.js";
import { keySlot } from "./tlog.js";
import { policySlot } from "./witness.js";

const root = document.getElementById("custody");
const t = messages(root);
const packageId = root.dataset.package;
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const button = document.getElementById("custody-bundle");
const state = document.getElementById("bundle-state");

function show(text, result) {
  state.textContent = text;
  state.dataset.result = result;
}

button.disabled = false;
button.addEventListener("click", async () => {
  const key = localStorage.getItem(keySlot);
  const policy = localStorage.getItem(policySlot) || (key ? `log ${key}\nquorum none\n` : null);
  if (!policy) {
    show(t("custody.bundle.unpinned"), "failed");
    return;
  }
  show(t("custody.bundle.making"), "busy");
  try {
    const response = await fetch(`/v1/packages/${encodeURIComponent(packageId)}/custody/bundle`, {
      method: "POST", body: policy, credentials: "same-origin",
      headers: { "Content-Type": "text/plain", "X-CSRF-Token": csrf },
    });
    if (!response.ok) {
      let reason = `HTTP ${response.status}`;
      try { reason = (await response.json()).detail || reason; } catch { /* not a problem body */ }
      show(t("custody.bundle.failed", { reason }), "failed");
      return;
    }
    const name = `custody-bundle-${packageId}.json`;
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = name;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
    show(t("custody.bundle.saved", { name }), "saved");
  } catch (error) {
    show(t("custody.bundle.failed", { reason: error.message }), "failed");
  }
});
