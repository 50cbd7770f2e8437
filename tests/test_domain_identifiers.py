"""NPI and DEA check digits (CONTRACT.md examples, and every single-digit typo)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum import luhn

from domain.identifiers import dea_with_check_digit, npi_with_check_digit, valid_dea, valid_npi

nine_digits = st.text(alphabet="0123456789", min_size=9, max_size=9)
ten_digits = st.text(alphabet="0123456789", min_size=10, max_size=10)


def test_contract_npi_is_valid():
    assert valid_npi("1234567893")


@pytest.mark.parametrize("npi", ["1234567890", "1234567894", "123456789", "12345678930", "123456789X",
                                 "", " 1234567893", "１２３４５６７８９３", None, 1234567893])
def test_bad_npis(npi):
    assert not valid_npi(npi)


@given(nine_digits)
def test_generated_npi_round_trips(first9):
    npi = npi_with_check_digit(first9)
    assert npi[:9] == first9 and valid_npi(npi)


@given(ten_digits)
def test_valid_npi_agrees_with_stdnum_luhn(npi):
    assert valid_npi(npi) == luhn.is_valid("80840" + npi)


@given(nine_digits, st.integers(0, 9), st.integers(1, 9))
def test_any_single_digit_typo_is_caught(first9, pos, delta):
    npi = npi_with_check_digit(first9)
    typo = npi[:pos] + str((int(npi[pos]) + delta) % 10) + npi[pos + 1:]
    assert not valid_npi(typo)


@pytest.mark.parametrize("bad", ["12345678", "1234567890", "abcdefghi", ""])
def test_npi_with_check_digit_rejects_bad_input(bad):
    with pytest.raises(ValueError, match="nine digits"):
        npi_with_check_digit(bad)


def test_contract_dea_is_valid():
    assert valid_dea("BC1234563")
    assert valid_dea("BC1234563", "Cruz")
    assert valid_dea("bc1234563", "cruz")


def test_dea_last_name_initial_or_business_9():
    assert not valid_dea("BC1234563", "Smith")
    assert valid_dea(dea_with_check_digit("B9", "123456"), "Anything")


@pytest.mark.parametrize("bad", ["BC1234564", "BC123456", "BC12345630", "1C1234563", "B11234563",
                                 "IC1234563", "NC1234563", "OC1234563", "", None])
def test_bad_deas(bad):
    assert not valid_dea(bad)


@pytest.mark.parametrize("letter", list("ABCDEFGHJKLMPRSTUX"))
def test_every_registrant_type_is_accepted(letter):
    assert valid_dea(dea_with_check_digit(letter + "C", "123456"), "Cruz")


@given(st.sampled_from(list("ABFGM")), st.sampled_from(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ9")),
       st.text(alphabet="0123456789", min_size=6, max_size=6))
def test_generated_dea_round_trips(kind, second, six):
    dea = dea_with_check_digit(kind + second, six)
    assert valid_dea(dea)
    d = [int(c) for c in six]
    assert int(dea[-1]) == (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10
    wrong = dea[:-1] + str((int(dea[-1]) + 1) % 10)
    assert not valid_dea(wrong)


@pytest.mark.parametrize("prefix,six", [("QC", "123456"), ("B", "123456"), ("BC", "12345"), ("B1", "123456")])
def test_dea_with_check_digit_rejects_bad_input(prefix, six):
    with pytest.raises(ValueError):
        dea_with_check_digit(prefix, six)
