"""Check digits: the digit that completes a number, and whether a number's last digit is it.

The form generators compute them to write truthful (and now and then wrong) numbers; templates
check them on what was read. One scheme each, here only:
- Luhn (payment cards, IMEIs): from the right of the whole number every second digit doubled,
  less 9 above 9; the check digit makes the sum a multiple of 10.
- mod 11: weights 2, 3, 4, ... from the rightmost digit of the body leftwards, check
  = (11 - sum mod 11) mod 11. A check of 10 has no digit: such bodies are never issued, and
  no number with one is valid.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_DIGITS = re.compile(r"[0-9]+")


def luhn(body: str) -> str:
    """The Luhn check digit after `body`."""
    total = 0
    for position, digit in enumerate(map(int, reversed(body))):
        doubled = digit * (2 - position % 2)  # the rightmost digit of the body is doubled
        total += doubled - 9 if doubled > 9 else doubled
    return str(-total % 10)


def mod11(body: str) -> str | None:
    """The mod-11 check digit after `body`; None where the check would be 10."""
    check = -sum(weight * int(d) for weight, d in enumerate(reversed(body), start=2)) % 11
    return None if check == 10 else str(check)


SCHEMES: dict[str, Callable[[str], str | None]] = {"luhn": luhn, "mod11": mod11}


def valid(scheme: str, number: str) -> bool:
    """Whether `number` (2 digits or more) ends in the `scheme` check digit of the rest."""
    if len(number) < 2 or not _DIGITS.fullmatch(number):
        return False
    return SCHEMES[scheme](number[:-1]) == number[-1]
