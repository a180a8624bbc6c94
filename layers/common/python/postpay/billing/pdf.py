"""The invoice as a PDF (fpdf2: pure Python, so it runs on Lambda arm64 without native libraries).

A4 with margins that also fit US Letter; the text is real text (extractable, searchable), in DejaVu Sans
shipped with the layer, so any name or address prints (not only Latin-1); Chinese, Japanese and Korean
script, which DejaVu lacks, print in Droid Sans Fallback, loaded only for an invoice that needs it (it is
3.4 MB: parsing it costs about half a second). The same figures as the page:
both read the stored invoice, nothing is recomputed here.

Each font file is parsed once per process (``_parsed_font``), not once per PDF: fpdf2 has no cache of its own
across documents, so each document gets a copy of the parsed font (``_add_font``) that shares what fpdf2
itself treats as immutable (the widths, the character map, the descriptor: see ``TTFFont.__deepcopy__``) and
has its own subset map and its own fontTools font over the cached file bytes.

fpdf2 subsets every embedded font when it writes the document, and that was two thirds of a Latin invoice's
PDF CPU (31 -> 13 ms per PDF after the first, ``python -m bench.pdf``). So each DejaVu face is embedded from
a per-process cache of cut fonts (``_cut_font``) keyed by the glyphs it holds: the glyphs the document prints
padded to those most invoices print (``_PADDING``: printable ASCII in the regular face; digits, capitals and
what amounts print in the bold one), so that invoices differing in names, addresses and amounts embed the
same cut, computed once per process; the padding costs ~7.5 KB per PDF (24 -> 32 KB). fpdf2 is told to leave
a cut font as it is (``_let_fpdf2_embed_cut_fonts``); the cut is made with fpdf2's own options, so the
embedded font is the bytes fpdf2 would write for the same glyphs. A cut is made from a copy of DejaVu cut
down once per process to the characters most invoices print (``_COMMON``) whenever it holds all the glyphs:
a cut from the whole of DejaVu (6,253 glyphs) costs twice as much; the bytes are the same either way. The
fallback font is subset by fpdf2 itself, per document.
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import types
from collections import defaultdict
from datetime import UTC, date, datetime
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

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
# What fpdf2 (2.8) drops from every font it embeds (fpdf.output's _add_fonts): dropped here too, once per
# process, and by the cut made with its options.
_FPDF_DROPPED_TABLES = [
    *("FFTM", "GDEF", "GPOS", "GSUB", "MATH", "hdmx", "meta", "sbix", "CBDT", "CBLC", "EBDT", "EBLC"),
    *("EBSC", "SVG ", "CPAL", "COLR"),
]


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

    # the tables fpdf2 drops from every embedded subset (layout, maths, timestamps), dropped here once so
    # that no document reads them again; and 'kern', which fontTools' subsetter drops when the font has GPOS
    stripped = ttLib.TTFont(path, recalcTimestamp=False, lazy=True)
    dropped = set(_FPDF_DROPPED_TABLES) | ({"kern"} if "GPOS" in stripped else set())
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


# Embedded by every invoice whether it prints them or not, so that most invoices embed the same cut of each
# face (see _embed_cut_fonts), at ~7.5 KB (compressed) per PDF: the regular face prints names and addresses,
# so printable ASCII and the dash printed for a missing value; the bold one prints the template's own words
# and the invoice's number, state and total, so digits, capitals and what amounts print.
_PADDING = {
    "": [*range(0x20, 0x7F), 0x2014],
    "B": [*range(0x30, 0x3A), *range(0x41, 0x5B), *map(ord, " ,.-:%¥")],
}


class _CutFont:
    """A font file already subset to the glyphs a document embeds: what fpdf2's output uses of
    ``font.ttfont`` once it has subset it (glyph ids, the file's bytes, close); ``_Subsetter`` leaves it
    as it is."""

    def __init__(self, glyph_order: list[str], data: bytes) -> None:
        self._ids = {name: gid for gid, name in enumerate(glyph_order)}
        self.data = data

    def getGlyphID(self, glyph_name: str) -> int:  # fontTools' name, which fpdf2 calls
        return self._ids[glyph_name]

    def save(self, file: BinaryIO) -> None:
        file.write(self.data)

    def close(self) -> None:
        pass


def _padding(family: str, style: str, path: str) -> frozenset[str]:
    parsed, _ = _parsed_font(family, style, path)
    return frozenset(parsed.cmap[c] for c in _PADDING[style] if c in parsed.cmap)


@functools.lru_cache(maxsize=64)  # ~20-40 KB each; most invoices share one key per face
def _cut_font(family: str, style: str, path: str, glyphs: frozenset[str]) -> _CutFont:
    """The face subset to ``glyphs`` as fpdf2 subsets it (the same options, so the same bytes), from the
    common cut when it holds them all (half the CPU of a cut from the whole font: ~11 ms against ~21)."""
    from fontTools import subset, ttLib

    names, data = _common_font(family, style, path)
    if not glyphs <= names:
        _, data = _parsed_font(family, style, path)
    font = ttLib.TTFont(BytesIO(data), recalcTimestamp=False, lazy=True)
    options = subset.Options(notdef_outline=True, recommended_glyphs=True)
    options.drop_tables += _FPDF_DROPPED_TABLES
    subsetter = subset.Subsetter(options)
    subsetter.populate(glyphs=sorted(glyphs))
    subsetter.subset(font)
    glyph_order = font.getGlyphOrder()  # with their names: fpdf2 asks for glyph ids by name
    out = BytesIO()
    font.save(out)
    return _CutFont(glyph_order, out.getvalue())


@functools.cache
def _let_fpdf2_embed_cut_fonts() -> None:
    """fpdf2 (2.8) subsets and writes every TrueType font when it outputs a document (``_add_fonts`` in
    fpdf.output: ``ftsubset.Subsetter(options)``, ``.populate``, ``.subset(font.ttfont)``, then
    ``font.ttfont.getGlyphID`` and ``.save``), with no way to hand it a font subset already: that was two
    thirds of a Latin invoice's PDF CPU. So fpdf.output's ``ftsubset`` is swapped, once per process, for
    fontTools.subset with a Subsetter that passes a ``_CutFont`` through untouched; any other font is
    subset as before. tests/unit/test_tax_and_invoice_document.py fails if fpdf2 changes that shape."""
    import fpdf.output
    from fontTools import subset

    class _Subsetter(subset.Subsetter):  # type: ignore[misc]
        def subset(self, font: object) -> None:
            if not isinstance(font, _CutFont):
                super().subset(font)

    shim = types.ModuleType(subset.__name__)
    shim.__dict__.update(vars(subset))
    shim.Subsetter = _Subsetter  # type: ignore[attr-defined]
    fpdf.output.ftsubset = shim  # type: ignore[attr-defined]


def _add_font(pdf: FPDF, family: str, style: str, path: str) -> None:
    """``pdf.add_font(family, style, path)`` without parsing the file again in this process."""
    from fontTools import ttLib
    from fpdf.fonts import SubsetMap

    parsed, data = _parsed_font(family, style, path)
    font = copy.copy(parsed)
    # fpdf2 writes the document's object number into the descriptor when it outputs the document and reads
    # it back later in the same output: a descriptor shared with a document output in another thread at
    # the same time (a worker composes its batch's emails in one) would get that document's number
    font.desc = copy.copy(parsed.desc)
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
    _embed_cut_fonts(pdf)
    return bytes(pdf.output())


def _embed_cut_fonts(pdf: FPDF) -> None:
    """Each DejaVu face is embedded from the per-process cache of cut fonts (``_cut_font``): the glyphs the
    document prints and the face's ``_PADDING``, so that most invoices embed the same cut; fpdf2 does not
    subset it again."""
    _let_fpdf2_embed_cut_fonts()
    for style, name in (("", "DejaVuSans.ttf"), ("B", "DejaVuSans-Bold.ttf")):
        font = pdf.fonts.get(f"{FONT.lower()}{style}")
        if font is None:
            continue
        path = _font(name)
        used = frozenset(font.subset.get_all_glyph_names())  # type: ignore[union-attr]
        font.ttfont = _cut_font(FONT, style, path, used | _padding(FONT, style, path))  # type: ignore[union-attr,assignment]
