"""Checks for the two identifiers every physician row carries: the NPI and the DEA number.

Both have a check digit, so a typo in a roster is caught on import instead of at the pharmacy.
"""

from __future__ import annotations

import re

from stdnum import luhn

#: The NPI check digit is the Luhn digit of "80840" + the first nine digits (CMS, NPI check digit spec).
NPI_PREFIX = "80840"
_NINE = re.compile(r"^[0-9]{9}$")

#: First letter of a DEA registration: the registrant type (DEA Diversion, registrant categories).
DEA_REGISTRANT_TYPES = frozenset("ABCDEFGHJKLMPRSTUX")
_DEA = re.compile(r"^[A-Z][A-Z9][0-9]{7}$")


#: What the 80840 prefix adds to the Luhn sum (mod 10) of a 15-digit "80840" + NPI number.
_PREFIX_SUM = luhn.checksum(NPI_PREFIX + "0" * 10)
#: Luhn value of a doubled digit (2d, minus 9 when above 9), keyed by the digit character.
_DOUBLED = {str(d): (2 * d) % 9 if d != 9 else 9 for d in range(10)}


def valid_npi(npi: str) -> bool:
    """True for a 10-digit NPI whose last digit is the Luhn check digit with the 80840 prefix.

    Same result as ``stdnum.luhn.is_valid("80840" + npi)`` (the tests check that), computed
    without the string round-trips so matching can screen 10,000 physicians in a few ms.
    """
    if not isinstance(npi, str) or len(npi) != 10 or not npi.isascii() or not npi.isdigit():
        return False
    d = _DOUBLED
    total = _PREFIX_SUM + sum(map(int, npi[1::2])) + d[npi[0]] + d[npi[2]] + d[npi[4]] + d[npi[6]] + d[npi[8]]
    return total % 10 == 0


def npi_with_check_digit(first9: str) -> str:
    """The full NPI for nine leading digits (used to make synthetic, valid NPIs)."""
    if not isinstance(first9, str) or not _NINE.match(first9):
        raise ValueError("first9 must be exactly nine digits")
    return first9 + luhn.calc_check_digit(NPI_PREFIX + first9)


def _dea_check_digit(six: str) -> str:
    d = [int(c) for c in six]
    return str((d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10)


def valid_dea(number: str, last_name: str | None = None) -> bool:
    """True for a well-formed DEA number with the right check digit.

    Given ``last_name``, the second letter must be its initial (or ``9`` for a business registrant).
    """
    if not isinstance(number, str):
        return False
    number = number.strip().upper()
    if not _DEA.match(number) or number[0] not in DEA_REGISTRANT_TYPES:
        return False
    if _dea_check_digit(number[2:8]) != number[8]:
        return False
    if last_name is not None:
        initial = next((c for c in last_name.strip().upper() if c.isalpha()), "")
        if number[1] != "9" and number[1] != initial:
            return False
    return True


def dea_with_check_digit(prefix2: str, first6: str) -> str:
    """The full DEA number for a two-letter prefix and six digits (for synthetic data)."""
    prefix2 = prefix2.upper() if isinstance(prefix2, str) else prefix2
    if not isinstance(prefix2, str) or not re.match(r"^[A-Z][A-Z9]$", prefix2) or prefix2[0] not in DEA_REGISTRANT_TYPES:
        raise ValueError("prefix2 must be a registrant-type letter followed by a letter or 9")
    if not isinstance(first6, str) or not re.match(r"^[0-9]{6}$", first6):
        raise ValueError("first6 must be exactly six digits")
    return prefix2 + first6 + _dea_check_digit(first6)
