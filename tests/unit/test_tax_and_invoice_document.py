"""Tax on the lines' total, seller/buyer snapshots, amount formatting, and old invoices still loading."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postpay import models, money
from postpay.adapters.invoice_documents import invoice_document, to_invoice
from postpay.adapters.params import ParameterError, profile_from
from postpay.adapters.tables import InvoiceItem
from postpay.billing import pdf as pdf_module
from postpay.billing.invoicing import charges
from postpay.billing.pdf import invoice_pdf
from postpay.models import (
    NO_PROFILE,
    Buyer,
    Invoice,
    InvoiceLine,
    InvoiceProfile,
    InvoiceStatus,
    Seller,
    TaxRule,
    tax_country,
)

D = Decimal
rates = st.decimals(min_value=D("0"), max_value=D("99.99"), places=2)
amounts = st.decimals(min_value=D("0"), max_value=D("10000000"), places=3)
currencies = st.sampled_from(["USD", "EUR", "JPY", "KWD"])


def line(amount: str, tokens: int = 1000) -> InvoiceLine:
    return InvoiceLine(
        server_id=1, name="web-1", plan="S", hours=720, tokens=tokens, unit_price=D("0.001"), amount=D(amount)
    )


def profile(rate: str = "20", *, inclusive: bool = False, reverse: bool = False) -> InvoiceProfile:
    return InvoiceProfile(
        seller=Seller(name="Example Hosting Ltd", address=("1 Main St", "London"), tax_id="GB123456789"),
        tax=TaxRule(rate=D(rate), label="VAT", inclusive=inclusive, reverse_charge=reverse),
        payment_instructions="Bank transfer to GB00 0000",
    )


# the money rules ---------------------------------------------------------------------------------


def test_exclusive_tax_is_added_on_top_of_the_lines_total():
    totals = money.with_tax(D("100.00"), D("20"), "USD", inclusive=False)
    assert (totals.subtotal, totals.tax, totals.total) == (D("100.00"), D("20.00"), D("120.00"))


def test_inclusive_tax_is_taken_out_of_the_lines_total():
    totals = money.with_tax(D("120.00"), D("20"), "USD", inclusive=True)
    assert (totals.subtotal, totals.tax, totals.total) == (D("100.00"), D("20.00"), D("120.00"))
    # 10.00 incl. 20 %: tax 1.666... -> 1.67 half-up, net 8.33
    totals = money.with_tax(D("10.00"), D("20"), "EUR", inclusive=True)
    assert (totals.subtotal, totals.tax, totals.total) == (D("8.33"), D("1.67"), D("10.00"))


def test_tax_is_rounded_half_up_once_on_the_total_not_per_line():
    # three lines of 0.05: per-line tax 0.01 each would be 0.03; on the total 0.15 * 20 % = 0.03 exactly,
    # and 0.125 (0.625 * 20 %) rounds half-up to 0.13
    assert money.with_tax(D("0.625"), D("20"), "USD", inclusive=False).tax == D("0.13")
    assert money.with_tax(D("0.15"), D("20"), "USD", inclusive=False).tax == D("0.03")


def test_zero_rate_gives_no_tax():
    totals = money.with_tax(D("29.99"), D("0"), "USD", inclusive=False)
    assert (totals.subtotal, totals.tax, totals.total) == (D("29.99"), D("0.00"), D("29.99"))


def test_jpy_has_no_minor_unit_and_kwd_has_three():
    assert money.with_tax(D("1235"), D("10"), "JPY", inclusive=False).tax == D("124")  # 123.5 -> 124
    assert money.with_tax(D("1235"), D("10"), "JPY", inclusive=False).total == D("1359")
    assert money.with_tax(D("1.005"), D("5"), "KWD", inclusive=False).tax == D("0.050")  # 0.05025
    assert money.with_tax(D("1.010"), D("5"), "KWD", inclusive=True).tax == D("0.048")  # 0.048095...


def test_negative_rate_is_refused():
    with pytest.raises(ValueError, match="non-negative"):
        money.with_tax(D("1"), D("-1"), "USD", inclusive=False)


@given(amounts, rates, currencies, st.booleans())
def test_subtotal_plus_tax_is_the_total_to_the_minor_unit(lines_total, rate, currency, inclusive):
    totals = money.with_tax(lines_total, rate, currency, inclusive=inclusive)
    exponent = -money.minor_unit(currency)
    for value in (totals.subtotal, totals.tax, totals.total):
        assert value.as_tuple().exponent == exponent
    assert totals.subtotal + totals.tax == totals.total
    assert totals.tax >= 0 and totals.subtotal >= 0
    rounded = money.round_money(lines_total, currency)
    exact = rounded * rate / 100 if not inclusive else rounded * rate / (100 + rate)
    assert abs(totals.tax - exact) <= money.quantum(currency) / 2
    assert (totals.total if inclusive else totals.subtotal) == rounded


def test_amounts_are_formatted_with_thousands_separators_per_currency():
    assert money.format_amount(D("1234.56"), "USD") == "1,234.56 USD"
    assert money.format_amount(D("1235"), "JPY") == "¥1,235"
    assert money.format_amount(D("1234.5"), "KWD") == "1,234.500 KWD"
    assert money.format_amount(D("0.00091"), "EUR") == "0.00091 EUR"  # a unit price keeps its precision
    assert money.format_count(29988) == "29,988"


# tax on an invoice -------------------------------------------------------------------------------


def test_charges_store_the_rate_in_force_and_the_rounded_tax():
    charged = charges([line("10.00"), line("2.50")], "USD", profile("20"), Buyer(name="Ada"))
    assert (charged.tax_rate, charged.tax, charged.total, charged.reverse_charge) == (
        D("20"),
        D("2.50"),
        D("15.00"),
        False,
    )


def test_reverse_charge_exempts_a_buyer_with_a_tax_id_of_another_country_when_switched_on():
    foreign = Buyer(name="Ada", tax_id="DE123456789")
    domestic = Buyer(name="Ada", tax_id="GB987654321")
    assert charges([line("10.00")], "USD", profile(reverse=True), foreign).reverse_charge
    assert charges([line("10.00")], "USD", profile(reverse=True), foreign).total == D("10.00")
    assert charges([line("10.00")], "USD", profile(reverse=True), domestic).total == D("12.00")
    assert charges([line("10.00")], "USD", profile(reverse=False), foreign).total == D("12.00")
    assert charges([line("10.00")], "USD", profile(reverse=True), Buyer(name="Ada")).total == D("12.00")


@pytest.mark.parametrize("tax_id", ["ZZ1234", "AB-123456", "QQ999999999", "XX1"])
def test_a_tax_id_whose_prefix_is_no_country_does_not_exempt_from_tax(tax_id):
    """Any two letters used to read as "another country": a client could type ZZ1 and pay no VAT."""
    charged = charges([line("10.00")], "USD", profile(reverse=True), Buyer(name="Ada", tax_id=tax_id))
    assert (charged.reverse_charge, charged.total) == (False, D("12.00"))


def test_greek_vat_ids_written_el_are_greece_and_xi_is_the_united_kingdom():
    assert tax_country("EL123456789") == tax_country("GR123456789") == "GR"
    assert tax_country("XI123456789") == tax_country("GB123456789") == "GB"  # Northern Ireland
    assert tax_country("CHE-123.456.789") == "CH" and tax_country("12-3456789") == ""
    assert len(models._COUNTRIES) == 249 and {"BS", "BT", "ZW", "AD"} <= models._COUNTRIES


def test_no_profile_means_no_tax():
    charged = charges([line("10.00")], "USD", NO_PROFILE, None)
    assert (charged.tax, charged.total) == (D("0.00"), D("10.00"))


# the invoice profile from SSM --------------------------------------------------------------------


def test_profile_parameters_are_read_into_seller_tax_and_instructions():
    got = profile_from(
        "/postpay/x/invoice/",
        {
            "seller/name": "Example Hosting Ltd",
            "seller/address": "1 Main Street\nLondon EC1A 1AA\n\nUnited Kingdom",
            "seller/tax-id": "gb123456789",
            "seller/email": "billing@example.com",
            "seller/website": "https://example.com",
            "tax/rate": "20",
            "tax/label": "VAT",
            "tax/mode": "inclusive",
            "tax/reverse-charge": "on",
            "payment-instructions": "IBAN GB00",
        },
    )
    assert got.seller == Seller(
        name="Example Hosting Ltd",
        address=("1 Main Street", "London EC1A 1AA", "United Kingdom"),
        tax_id="GB123456789",
        email="billing@example.com",
        website="https://example.com",
    )
    assert got.tax == TaxRule(rate=D("20"), label="VAT", inclusive=True, reverse_charge=True)
    assert got.payment_instructions == "IBAN GB00"


def test_no_seller_name_means_no_seller_and_defaults_mean_no_tax():
    got = profile_from("/p/", {})
    assert got.seller is None and got.tax.rate == 0 and not got.tax.inclusive


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("tax/rate", "twenty"),
        ("tax/rate", "-5"),
        ("tax/rate", "100"),
        ("tax/mode", "sometimes"),
        ("tax/reverse-charge", "maybe"),
        ("seller/logo", "https://example.com/logo.png"),
        ("seller/website", "example.com"),
        ("seller/email", "nobody"),
    ],
)
def test_a_malformed_profile_parameter_is_named(name, value):
    with pytest.raises(ParameterError, match=name):
        profile_from("/p/", {"seller/name": "X", name: value})


# the stored document -----------------------------------------------------------------------------


def invoice(**changes: object) -> Invoice:
    base = Invoice(
        number="INV-000001",
        client_id=7,
        email="ada@example.com",
        solus_user_id=3,
        period_start=date(2026, 10, 1),
        period_end=date(2026, 10, 31),
        timezone="UTC",
        currency="USD",
        token_price=D("0.001"),
        lines=(line("12.50"),),
        total=D("15.00"),
        status=InvoiceStatus.UNPAID,
        issued_on=date(2026, 11, 1),
        due_on=date(2026, 11, 15),
        usage="{}",
        run_id="r",
        seller=profile().seller,
        buyer=Buyer(
            name="Ada", company="Engines", email="ada@example.com", address=("2 Side St",), tax_id="X1"
        ),
        tax_rate=D("20"),
        tax_label="VAT",
        tax=D("2.50"),
        payment_instructions="IBAN GB00",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def item_for(document: str, status: str = "unpaid") -> InvoiceItem:
    return InvoiceItem("7#2026-10", usage="{}", status=status, document=document)


def test_the_document_keeps_seller_buyer_and_tax_exactly():
    original = invoice()
    assert to_invoice(item_for(invoice_document(original))) == original
    assert original.subtotal == D("12.50") and original.shows_tax


def test_an_invoice_stored_before_tax_existed_still_loads_with_no_tax():
    doc = json.loads(invoice_document(invoice()))
    for key in (
        "seller",
        "buyer",
        "tax_rate",
        "tax_label",
        "tax_inclusive",
        "reverse_charge",
        "tax",
        "payment_instructions",
    ):
        del doc[key]
    doc["total"] = "12.50"
    old = to_invoice(item_for(json.dumps(doc)))
    assert old.seller is None and old.buyer is None
    assert (old.tax, old.subtotal, old.total, old.shows_tax) == (D("0"), D("12.50"), D("12.50"), False)


def test_status_is_overdue_only_when_unpaid_past_the_due_date():
    unpaid = invoice()
    assert unpaid.state(date(2026, 11, 15)) == "unpaid"
    assert unpaid.state(date(2026, 11, 16)) == "overdue"
    assert replace(unpaid, status=InvoiceStatus.PAID).state(date(2027, 1, 1)) == "paid"


# the PDF -----------------------------------------------------------------------------------------


def pdf_text(data: bytes) -> str:
    pdftotext = shutil.which("pdftotext")
    assert pdftotext, "pdftotext (Debian's poppler-utils) is needed: `make test` installs it"
    return subprocess.run([pdftotext, "-", "-"], input=data, capture_output=True, check=True).stdout.decode()


def test_the_pdf_prints_a_buyer_written_in_chinese_or_japanese_script():
    """DejaVu Sans has no CJK glyphs: without a fallback font the address line silently vanished."""
    buyer = Buyer(name="山田太郎", company="株式会社サンプル", address=("東京都千代田区1-1", "Seoul 서울"))
    text = pdf_text(invoice_pdf(invoice(buyer=buyer), today=date(2026, 11, 2)))
    for expected in ("山田太郎", "株式会社サンプル", "東京都千代田区1-1", "서울"):
        assert expected in text


def test_the_pdf_loads_the_large_fallback_font_only_when_a_text_needs_it():
    calls: list[str] = []
    original = pdf_module._fallback_font_path
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pdf_module, "_fallback_font_path", lambda: calls.append("x") or original())
        assert "Ada" in pdf_text(invoice_pdf(invoice(), today=date(2026, 11, 2)))
    assert calls == []


def test_the_fonts_are_parsed_once_per_process_and_every_pdf_still_embeds_its_own_glyphs():
    """fpdf2 subsets the embedded font in place: a parsed font shared as is would lose the glyphs that the
    first document did not use."""
    import fpdf.fonts

    invoice_pdf(invoice(), today=date(2026, 11, 2))  # parses DejaVu (regular and bold), if not yet
    parsed: list[str] = []
    original = fpdf.fonts.TTFFont.__init__
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            fpdf.fonts.TTFFont,
            "__init__",
            lambda self, *a, **k: parsed.append("x") or original(self, *a, **k),
        )
        first = pdf_text(invoice_pdf(invoice(), today=date(2026, 11, 2)))
        other = Buyer(name="Zoë Quintus-Wyatt", address=("9 Jump Road", "Växjö"))
        second = pdf_text(invoice_pdf(invoice(buyer=other), today=date(2026, 11, 2)))
    assert parsed == []
    assert "Ada" in first
    assert "Zoë Quintus-Wyatt" in second and "Växjö" in second


@pytest.mark.parametrize(
    "name", ["Ada Lovelace", "Zoë Ŵright-Þórsdóttir", "Ελένη Παππά", "Иван Петров", "אדה לאבלייס"]
)
def test_the_pdf_embeds_the_fonts_fpdf2_itself_would_subset(monkeypatch, name):
    """The DejaVu faces are embedded from a per-process cache of cuts made with fpdf2's own options (from the
    common cut, or from the whole font for Hebrew here), and fpdf2 is told to leave them as they are: with no
    padding, the PDF is the bytes fpdf2 writes when it subsets each face itself. Fails if fpdf2 changes how it
    subsets (its options, the tables it drops, how it numbers the glyphs)."""
    document = invoice(buyer=replace(invoice().buyer, name=name))  # type: ignore[arg-type]
    monkeypatch.setattr(pdf_module, "_PADDING", {"": [], "B": []})
    cut = invoice_pdf(document, today=date(2026, 11, 2))
    monkeypatch.setattr(pdf_module, "_embed_cut_fonts", lambda pdf: None)
    by_fpdf2 = invoice_pdf(document, today=date(2026, 11, 2))
    assert cut == by_fpdf2
    if name.isascii():
        assert name in pdf_text(cut)


def _font_files(data: bytes) -> list[bytes]:
    """The embedded font files of a PDF (fpdf2 writes each as a FlateDecode stream with /Length1)."""
    import re
    import zlib

    starts = [m.end() for m in re.finditer(rb"/Length1 \d+\s*>>\s*stream\r?\n", data)]
    return [zlib.decompressobj().decompress(data[start:]) for start in starts]


def test_invoices_that_print_other_ascii_text_embed_the_same_cut_computed_once_per_process(monkeypatch):
    """Subsetting DejaVu when writing each PDF was two thirds of its CPU: a face is cut once per process for
    the glyphs printed padded to printable ASCII (the bold one: digits, capitals, amounts), so another
    buyer, address and total embed the same cut and nothing is subset again."""
    from fontTools import subset

    # Given a process that has rendered one invoice
    first = invoice_pdf(invoice(), today=date(2026, 11, 2))
    subsets: list[object] = []
    original = subset.Subsetter.subset
    monkeypatch.setattr(
        subset.Subsetter, "subset", lambda self, font: subsets.append(font) or original(self, font)
    )
    misses = pdf_module._cut_font.cache_info().misses
    # When an invoice for another buyer with another total is rendered
    buyer = Buyer(name="Quincy Jakobs", company="Wyvern Ltd", email="qj@example.org", address=("77 Vale Rd",))
    other = invoice_pdf(invoice(buyer=buyer, total=D("48301.79")), today=date(2026, 11, 2))
    # Then no font was subset again, and the same font files are embedded
    assert subsets == [] and pdf_module._cut_font.cache_info().misses == misses
    assert _font_files(other) == _font_files(first) and len(_font_files(first)) == 2
    assert "Quincy Jakobs" in pdf_text(other) and "48,301.79 USD" in pdf_text(other)


def test_a_glyph_outside_the_padding_is_cut_once_and_prints():
    """A name with letters beyond ASCII gets its own cut of the regular face (once per process), and its
    letters print."""
    pdf_module._cut_font.cache_clear()
    invoice_pdf(invoice(), today=date(2026, 11, 2))
    assert pdf_module._cut_font.cache_info().misses == 2  # the regular and the bold face
    buyer = Buyer(name="Zoë Ŵright-Þórsdóttir", address=("Växjö",))
    first = invoice_pdf(invoice(buyer=buyer), today=date(2026, 11, 2))
    assert pdf_module._cut_font.cache_info().misses == 3  # the regular face: the bold one prints no name
    again = invoice_pdf(invoice(buyer=buyer), today=date(2026, 11, 2))
    assert pdf_module._cut_font.cache_info().misses == 3 and again == first
    assert "Zoë Ŵright-Þórsdóttir" in pdf_text(first) and "Växjö" in pdf_text(first)


def test_the_pdf_is_the_same_bytes_whether_its_fonts_were_cut_for_it_or_taken_from_the_cache():
    pdf_module._cut_font.cache_clear()
    cut_for_it = invoice_pdf(invoice(), today=date(2026, 11, 2))
    assert invoice_pdf(invoice(), today=date(2026, 11, 2)) == cut_for_it


def test_fpdf2_still_subsets_and_writes_fonts_the_way_the_cut_fonts_rely_on():
    """_let_fpdf2_embed_cut_fonts swaps fpdf.output's ``ftsubset`` for one whose Subsetter leaves a cut font
    as it is, and _CutFont offers what fpdf2 then calls on it: if fpdf2 changes that shape, this fails
    (and fpdf2 would subset a cut font as a fontTools font: the PDF tests above fail too)."""
    import inspect

    import fpdf.output
    from fontTools import subset

    invoice_pdf(invoice(), today=date(2026, 11, 2))
    source = inspect.getsource(fpdf.output.OutputProducer._add_fonts)
    for call in (
        "ftsubset.Subsetter(options)",
        "subsetter.populate(glyphs=glyph_names)",
        "subsetter.subset(font.ttfont)",
        "font.ttfont.getGlyphID(glyph.glyph_name)",
        "font.ttfont.save(output)",
    ):
        assert call in source, f"fpdf2 no longer does {call} when it writes a font"
    assert issubclass(fpdf.output.ftsubset.Subsetter, subset.Subsetter)
    assert fpdf.output.ftsubset.Subsetter is not subset.Subsetter
    assert fpdf.output.ftsubset.Options is subset.Options
