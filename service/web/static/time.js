// Dates in the officer's own time zone. The service writes every date as
// <time datetime="...Z" title="... UTC" data-utc>... UTC</time>: UTC is what a page without
// script shows and what the title keeps; here each is shown in this browser's time zone, named
// (IANA name and offset), so "14:38 Europe/Paris (GMT+1)" is never mistaken for UTC.
// A datetime-local field marked data-utc-input is read in that zone too and sent as UTC.

const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
const utcZone = ["UTC", "Etc/UTC", "Etc/GMT", "GMT", "Etc/Universal", "Etc/Zulu"].includes(zone);
const format = new Intl.DateTimeFormat("en-GB", {
  timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit",
  minute: "2-digit", hourCycle: "h23", timeZoneName: "shortOffset",
});

/** The date as "YYYY-MM-DD HH:MM Zone/Name (GMT+h)" in this browser's time zone. */
export function local(date) {
  const p = Object.fromEntries(format.formatToParts(date).map((x) => [x.type, x.value]));
  const day = `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}`;
  return utcZone ? `${day} UTC` : `${day} ${zone} (${p.timeZoneName})`;
}

for (const element of document.querySelectorAll("time[data-utc]")) {
  const date = new Date(element.getAttribute("datetime"));
  if (!Number.isNaN(date.getTime())) {
    element.textContent = local(date);
    element.dataset.zone = zone;
  }
}

for (const input of document.querySelectorAll('input[type="datetime-local"][data-utc-input]')) {
  const label = document.querySelector(`label[for="${input.id}"]`);
  if (label && input.dataset.localLabel) {
    label.textContent = input.dataset.localLabel.replace("{zone}", zone);
  }
  input.form.addEventListener("submit", () => {
    const date = new Date(input.value); // a datetime-local value is read in this zone
    if (input.value && !Number.isNaN(date.getTime())) {
      input.value = date.toISOString().slice(0, 16); // the service reads it as UTC
    }
  });
}
