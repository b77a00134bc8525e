// RFC 8785 for the entry value domain: strings, integers, booleans, null, arrays, objects.
// JSON.stringify writes strings exactly as JCS does (lowercase \u00xx, others literal); keys
// are sorted by UTF-16 code units, JavaScript's default string order.
import { Problem } from "./problem.js";
export function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
  }
  if (typeof value === "number" && !Number.isSafeInteger(value)) throw new Problem("custody.err.not_integer");
  return JSON.stringify(value);
}
