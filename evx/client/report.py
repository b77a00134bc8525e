"""The custody report: a verified bundle's timeline as a PDF an expert can print, with the
bundle itself embedded as a file attachment (fpdf2, the ``report`` extra)."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from pathlib import Path

from custody.bundle import VerifiedBundle
from custody.policy import Policy
from evx.client.errors import UsageError

BUNDLE_ATTACHMENT = "custody-bundle.json"
# A Unicode font where the system has one (names and subjects are not always Latin-1).
_FONT_CANDIDATES = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"),
    Path("/Library/Fonts/DejaVuSans.ttf"),
)
_COLUMNS = (("#", 10), ("time (UTC)", 36), ("authority / subject / role", 62), ("action", 40),
            ("outcome", 34), ("item", 48), ("legal reference", 47))


def render_report(verified: VerifiedBundle, bundle: bytes, policy: Policy, *,
                  verified_at: datetime | None = None) -> bytes:
    """The PDF bytes of the report of ``verified`` (which ``bundle`` is), embedding ``bundle``.

    Raises:
        UsageError: fpdf2 is not installed (``pip install "evidence-exchange[report]"``).
    """
    try:
        from fpdf import FPDF
        from fpdf.fonts import FontFace
    except ImportError:
        raise UsageError("the PDF report needs fpdf2",
                         hint='pip install "evidence-exchange[report]"') from None
    verified_at = verified_at or datetime.now(UTC)
    pdf = FPDF(orientation="L", format="A4")
    pdf.set_title(f"Chain of custody of {verified.package_id}")
    pdf.set_creator("evidence-exchange (evx custody --report)")
    font = next((p for p in _FONT_CANDIDATES if p.is_file()), None)
    if font is not None:
        pdf.add_font("body", fname=str(font))
        family = "body"

        def text(value: str) -> str:
            return value
    else:
        family = "helvetica"

        def text(value: str) -> str:
            return value.encode("latin-1", "replace").decode("latin-1")

    pdf.set_auto_page_break(True, margin=12)
    pdf.add_page()
    pdf.set_font(family, size=16)
    pdf.cell(0, 10, text(f"Chain of custody of package {verified.package_id}"),
             new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, size=9)
    checkpoint = verified.witnessed.checkpoint
    cosigned = ", ".join(
        f"{name} ({datetime.fromtimestamp(t, UTC):%Y-%m-%d %H:%M:%S} UTC)"
        for name, t in sorted(verified.witnessed.cosigned.items())) or "none"
    lines = [
        f"VERIFIED on {verified_at:%Y-%m-%d %H:%M:%S} UTC: {len(verified.entries)} entries, each "
        "proven included in one checkpoint of the custody ledger, forming the package's "
        "chain from its first entry.",
        f"Checkpoint: {checkpoint.origin}, {checkpoint.size} entries, root "
        f"{base64.b64encode(checkpoint.root).decode()}.",
        f"Signed by the log key {verified.witnessed.log_key}.",
        f"Cosigned by the witnesses {cosigned}; the policy requires "
        f"{policy.describe_quorum()}.",
    ]
    if verified.manifest is not None:
        lines.append(f"Sealed manifest: {len(verified.manifest['items'])} items; its hash "
                     "equals the one the seal entry records.")
    lines.append("Rules of the exchange: " + ("every rule holds." if not verified.violations
                 else "; ".join(str(v) for v in verified.violations)))
    lines.append(f"The custody bundle is attached to this document as {BUNDLE_ATTACHMENT} "
                 f"(SHA-256 {hashlib.sha256(bundle).hexdigest()}); verify it without this "
                 "software as docs/ledger-format.md section 10 describes, or with "
                 f"`evx verify-bundle {BUNDLE_ATTACHMENT} --policy POLICY`.")
    for line in lines:
        pdf.multi_cell(0, 5, text(line), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font(family, size=12)
    pdf.cell(0, 8, "Timeline", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, size=8)
    heading = FontFace(
        emphasis="BOLD" if family == "helvetica" else None, fill_color=(225, 225, 225)
    )
    with pdf.table(col_widths=tuple(w for _, w in _COLUMNS), headings_style=heading,
                   line_height=4.5, text_align="LEFT") as table:
        table.row([name for name, _ in _COLUMNS])
        for entry in verified.entries:
            outcome = str(entry.outcome) if entry.reason is None else \
                f"{entry.outcome}: {entry.reason}"
            legal = f"{entry.legal.basis}; {entry.legal.request_reference}" if entry.legal \
                else ""
            action = str(entry.action)
            if entry.action == "share.created" and entry.details.get("authority"):
                action += f" -> {entry.details['authority']}"
            table.row([text(v) for v in (
                str(entry.index), entry.time[:19].replace("T", " "),
                f"{entry.actor.authority} / {entry.actor.subject} / {entry.actor.role}",
                action, outcome, entry.item or "", legal)])
    if verified.manifest is not None:
        pdf.ln(4)
        pdf.set_font(family, size=12)
        pdf.cell(0, 8, "Sealed items", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(family, size=8)
        with pdf.table(col_widths=(90, 30, 157), headings_style=heading, line_height=4.5,
                       text_align="LEFT") as table:
            table.row(["item", "size (bytes)", "SHA-256"])
            for item in verified.manifest["items"]:
                table.row([text(str(item["name"])), str(item["size"]), str(item["sha256"])])
    pdf.embed_file(bytes=bundle, basename=BUNDLE_ATTACHMENT, mime_type="application/json",
                   desc="evx custody bundle (docs/ledger-format.md section 10)",
                   modification_date=verified_at)
    return bytes(pdf.output())
