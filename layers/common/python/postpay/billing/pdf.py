"""The invoice as a PDF (fpdf2: pure Python, so it runs on Lambda arm64 without native libraries).

A4 with margins that also fit US Letter; the text is real text (extractable, searchable), in DejaVu Sans
shipped with the layer, so any name or address prints (not only Latin-1); Chinese, Japanese and Korean
script, which DejaVu lacks, print in Droid Sans Fallback, loaded only for an invoice that needs it (it is
3.4 MB: parsing it costs about half a second). The same figures as the page:
both read the stored invoice, nothing is recomputed here.

Each font file is parsed once per process (``_parsed_font``), not once per PDF: fpdf2 has no cache of its own
across documents, so each document gets a copy of the parsed font (``_add_font``) that shares what fpdf2
itself treats as immutable (the widths, the character map, the descriptor: see ``TTFFont.__deepcopy__``) and
has its own subset and its own fontTools font over the cached file bytes, because fpdf2 subsets that font in
place when it writes the document. That font is a copy of DejaVu cut down once per process to the characters
most invoices print (``_COMMON``) whenever the document uses no other glyph: fpdf2 reads every table of the
font it subsets, and reading DejaVu's 6,253 glyphs was half of a Latin invoice's PDF time (88 -> 51 ms CPU);
the embedded subset is the same bytes either way.
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
from collections import defaultdict
from datetime import UTC, date, datetime
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

from postpay.models import Buyer, Invoice, Seller
from postpay.money import format_amount, format_count

if TYPE_CHECKING:
    from fpdf import FPDF
    from fpdf.fonts import TTFFont

FONT = "DejaVu"
_FONTS = Path(__file__).resolve().parent.parent / "fonts"  # shipped in the layer with the package
_WIDTH = 170.0  # A4 is 210 mm wide, Letter 216 mm: 20 mm margins fit both
_COLUMNS = (("Server", 46.0), ("Plan", 26.0), ("Hours", 18.0), ("Tokens", 24.0), ("Unit price", 26.0))
_AMOUNT_COLUMN = _WIDTH - sum(w for _, w in _COLUMNS)
_DROPPED_TABLES = {"FFTM", "GDEF", "GPOS", "GSUB", "MATH", "hdmx"}


def _font(name: str) -> str:
    return str(_FONTS / name)


def _fallback_font_path() -> str:
    return _font("DroidSansFallback.ttf")


@functools.cache
def _parsed_font(family: str, style: str, path: str) -> tuple[TTFFont, bytes]:
    """The font as fpdf2 parses it (character map, widths, glyph ids, descriptor) and the file's bytes."""
    from fontTools import ttLib
    from fpdf import FPDF
    from fpdf.fonts import TTFFont

    # the tables fpdf2 drops from every embedded subset (layout, maths, timestamps: fpdf.output's
    # _add_fonts), dropped here once so that no document reads them again; and 'kern', which fontTools'
    # subsetter drops when the font has GPOS
    stripped = ttLib.TTFont(path, recalcTimestamp=False, lazy=True)
    dropped = _DROPPED_TABLES | ({"kern"} if "GPOS" in stripped else set())
    for tag in dropped & set(stripped.keys()):
        del stripped[tag]
    data = BytesIO()
    stripped.save(data)
    return TTFFont(FPDF(), Path(path), f"{family.lower()}{style}", style), data.getvalue()


# The characters most invoices print (Latin, Greek, Cyrillic, punctuation, currency): see the module doc.
_COMMON = [*range(0x20, 0x530), *range(0x2000, 0x2070), *range(0x20A0, 0x20C1), 0x2116, 0x2122, 0xFFFD]


@functools.cache
def _common_font(family: str, style: str, path: str) -> tuple[frozenset[str], bytes]:
    """The font cut down to the _COMMON characters, keeping everything else (names, hinting) as it is;
    and the names of its glyphs."""
    from fontTools import subset, ttLib

    _, data = _parsed_font(family, style, path)
    font = ttLib.TTFont(BytesIO(data), recalcTimestamp=False)
    options = subset.Options(
        notdef_outline=True,
        recommended_glyphs=True,
        glyph_names=True,
        name_IDs=["*"],
        name_languages=["*"],
        name_legacy=True,
        layout_features=["*"],
        legacy_kern=True,
        notdef_glyph=True,
        prune_unicode_ranges=False,
        drop_tables=[],
    )
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=_COMMON)
    subsetter.subset(font)
    out = BytesIO()
    font.save(out)
    return frozenset(font.getGlyphOrder()), out.getvalue()


def _add_font(pdf: FPDF, family: str, style: str, path: str) -> None:
    """``pdf.add_font(family, style, path)`` without parsing the file again in this process."""
    from fontTools import ttLib
    from fpdf.fonts import SubsetMap

    parsed, data = _parsed_font(family, style, path)
    font = copy.copy(parsed)
    font.i = len(pdf.fonts) + 1
    font.cw = defaultdict(parsed.cw.default_factory, parsed.cw)  # type: ignore[attr-defined]  # looking up a missing width inserts it
    font.missing_glyphs = []
    font.biggest_size_pt = 0
    font._hbfont = None
    # written (subset in place) when the document is output: a fresh, lazily read one per document
    font.ttfont = ttLib.TTFont(BytesIO(data), recalcTimestamp=False, lazy=True)
    font.subset = SubsetMap(font)
    pdf.fonts[font.fontkey] = font


def _invoice_text(invoice: Invoice, buyer: Buyer | None) -> str:
    """Every free text the PDF prints: what decides whether the fallback font is needed."""
    parties = [p for p in (invoice.seller, buyer) if p is not None]
    return "".join(
        [
            *("".join(_party_lines(p)) for p in parties),
            *(ln.name + (ln.plan or "") for ln in invoice.lines),
            invoice.email,
            invoice.tax_label,
            invoice.payment_instructions,
            invoice.timezone,
        ]
    )


def _logo(seller: Seller | None) -> BytesIO | None:
    if seller is None or not seller.logo:
        return None
    try:
        return BytesIO(base64.b64decode(seller.logo.split(",", 1)[1], validate=True))
    except (IndexError, binascii.Error, ValueError):
        return None


def _party_lines(party: Seller | Buyer) -> list[str]:
    lines = [party.name]
    if isinstance(party, Buyer) and party.company:
        lines.append(party.company)
    lines.extend(party.address)
    if party.tax_id:
        lines.append(f"Tax id: {party.tax_id}")
    if party.email:
        lines.append(party.email)
    if isinstance(party, Seller) and party.website:
        lines.append(party.website)
    return lines


def invoice_pdf(
    invoice: Invoice, *, today: date, fallback_buyer: Buyer | None = None, pay_url: str | None = None
) -> bytes:
    """``today`` decides paid / unpaid / overdue and whether payment instructions are printed; ``pay_url``
    (card payments configured and the invoice payable by card: postpay.payments.pay_online_url) adds the
    invoice page's link, where Pay now is, to them."""
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos

    pdf = FPDF(format="A4", unit="mm")
    pdf.set_margins(20, 20, 20)
    pdf.set_auto_page_break(auto=True, margin=38)  # Letter is 18 mm shorter than A4
    _add_font(pdf, FONT, "", _font("DejaVuSans.ttf"))
    _add_font(pdf, FONT, "B", _font("DejaVuSans-Bold.ttf"))
    seller, buyer = invoice.seller, invoice.buyer or fallback_buyer
    glyphs = getattr(pdf.fonts[FONT.lower()], "cmap", {})  # a TTFFont: code point -> glyph
    if any(ord(ch) not in glyphs for ch in _invoice_text(invoice, buyer) if not ch.isspace()):
        _add_font(pdf, "Fallback", "", _fallback_font_path())
        pdf.set_fallback_fonts(["Fallback"], exact_match=False)  # bold falls back to the regular face
    pdf.set_title(f"Invoice {invoice.number}")
    pdf.set_author(seller.name if seller else "Post-Pay")
    pdf.set_creator("Post-Pay")
    # the day it describes the invoice's state on, not the clock: the same invoice on the same day is the same
    # bytes (fpdf2 stamps "now", so two renderings a second apart differed)
    pdf.set_creation_date(datetime(today.year, today.month, today.day, tzinfo=UTC))
    pdf.set_lang("en")
    pdf.add_page()
    currency = invoice.currency
    state = invoice.state(today)

    def text(
        value: str, *, size: float = 10, bold: bool = False, align: str = "L", height: float = 5
    ) -> None:
        pdf.set_font(FONT, "B" if bold else "", size)
        pdf.multi_cell(_WIDTH, height, value, align=align, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    logo = _logo(seller)
    if logo is not None:
        pdf.image(logo, x=20, y=15, h=14)
        pdf.set_y(32)
    text(f"Invoice {invoice.number}", size=18, bold=True, height=9)
    text(f"Status: {state}", bold=True)
    pdf.ln(3)

    # seller and buyer side by side
    top = pdf.get_y()
    half = _WIDTH / 2 - 4
    pdf.set_font(FONT, "B", 9)
    pdf.multi_cell(half, 5, "From", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, "", 10)
    pdf.multi_cell(half, 5, "\n".join(_party_lines(seller)) if seller else "—")
    left_bottom = pdf.get_y()
    pdf.set_xy(20 + half + 8, top)
    pdf.set_font(FONT, "B", 9)
    pdf.multi_cell(half, 5, "Billed to", new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.set_font(FONT, "", 10)
    billed = _party_lines(buyer) if buyer else [invoice.email]
    pdf.multi_cell(half, 5, "\n".join([*billed, f"Client {invoice.client_id}"]))
    pdf.set_xy(20, max(left_bottom, pdf.get_y()) + 4)

    facts = [
        ("Issued", invoice.issued_on.isoformat()),
        ("Due", invoice.due_on.isoformat()),
        ("Period", f"{invoice.period_start} to {invoice.period_end} ({invoice.timezone})"),
    ]
    if invoice.paid_at:
        facts.append(("Paid", invoice.paid_at.date().isoformat()))
    if invoice.carry_note:
        facts.append(("Carried", invoice.carry_note))
    for label, value in facts:
        pdf.set_font(FONT, "B", 10)
        pdf.cell(22, 5, label)
        pdf.set_font(FONT, "", 10)
        pdf.cell(_WIDTH - 22, 5, value, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(4)

    # the lines
    widths = [w for _, w in _COLUMNS] + [_AMOUNT_COLUMN]
    aligns = ("LEFT", "LEFT", "RIGHT", "RIGHT", "RIGHT", "RIGHT")
    pdf.set_font(FONT, "", 9)
    with pdf.table(
        col_widths=widths,
        text_align=aligns,
        line_height=5.5,
        first_row_as_headings=True,
        borders_layout="HORIZONTAL_LINES",
        width=_WIDTH,
    ) as table:
        table.row([name for name, _ in _COLUMNS] + ["Amount"])
        for line in invoice.lines:
            table.row(
                [
                    line.name + (" (deleted)" if line.deleted else ""),
                    line.plan or "—",
                    format_count(line.hours),
                    format_count(line.tokens),
                    format_amount(line.unit_price, currency),
                    format_amount(line.amount, currency),
                ]
            )
    pdf.ln(3)

    totals = [("Subtotal", format_amount(invoice.subtotal, currency))]
    if invoice.shows_tax:
        rate = format(invoice.tax_rate.normalize(), "f")
        included = " (included)" if invoice.tax_inclusive else ""
        totals.append((f"{invoice.tax_label} {rate} %{included}", format_amount(invoice.tax, currency)))
    for carried in invoice.carried_in:  # taxed on its own invoice: after the tax
        totals.append((f"Balance carried from {carried.number}", format_amount(carried.amount, currency)))
    totals.append(("Total", format_amount(invoice.total, currency)))
    for label, value in totals:
        bold = label == "Total"
        pdf.set_font(FONT, "B" if bold else "", 11 if bold else 10)
        pdf.cell(_WIDTH - 45, 6, label, align="R")
        pdf.cell(45, 6, value, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if invoice.reverse_charge:
        pdf.ln(2)
        text(f"Reverse charge: {invoice.tax_label} is accounted for by the customer.")
    if state not in ("paid", "carried") and (invoice.payment_instructions or pay_url):
        pdf.ln(4)
        text("How to pay", bold=True, size=11)
        text(f"Please pay {format_amount(invoice.total, currency)} by {invoice.due_on}.")
        if invoice.payment_instructions:
            text(invoice.payment_instructions)
        if pay_url:
            page, top = pdf.page_no(), pdf.get_y()
            text(f"Pay online: {pay_url}")
            if pdf.page_no() == page:  # clickable in a reader, not only printed
                pdf.link(20, top, _WIDTH, pdf.get_y() - top, pay_url)
    _embed_common_fonts(pdf)
    return bytes(pdf.output())


def _embed_common_fonts(pdf: FPDF) -> None:
    """Each DejaVu face whose glyphs in this document are all common is subset from the cut-down copy."""
    from fontTools import ttLib

    for style, name in (("", "DejaVuSans.ttf"), ("B", "DejaVuSans-Bold.ttf")):
        font = pdf.fonts.get(f"{FONT.lower()}{style}")
        if font is None:
            continue
        names, data = _common_font(FONT, style, _font(name))
        if names.issuperset(font.subset.get_all_glyph_names()):  # type: ignore[union-attr]
            font.ttfont = ttLib.TTFont(BytesIO(data), recalcTimestamp=False, lazy=True)  # type: ignore[union-attr]
