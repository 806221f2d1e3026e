"""Check digits against published numbers: a Luhn-valid card number and ISBN-10s (mod 11)."""

from __future__ import annotations

import pytest

from trainer import checkdigits
from trainer.checkdigits import valid


def test_the_digit_computed_is_the_digit_checked() -> None:
    assert checkdigits.luhn("7992739871") == "3"
    assert checkdigits.mod11("030640615") == "2"
    assert checkdigits.mod11("080442957") is None  # ISBN 0-8044-2957-X: no digit checks it


def test_luhn_checks_published_numbers() -> None:
    assert all(valid("luhn", n) for n in ("79927398713", "4111111111111111", "4539148803436467"))
    assert not valid("luhn", "79927398710")  # wrong check digit
    assert not valid("luhn", "79927398731")  # the last two digits swapped
    assert not any(valid("luhn", n) for n in ("7", "", "7992 7398 713", "٧٩"))


def test_mod11_is_the_isbn10_check() -> None:
    # ISBN-10 0-306-40615-2 uses the same rule for 9 digits: 5·2 + 1·3 + 6·4 + 0·5 + 4·6 + 6·7
    # + 0·8 + 3·9 + 0·10 = 130, 130 mod 11 = 9, check (11 - 9) mod 11 = 2
    assert valid("mod11", "0306406152") and not valid("mod11", "0306406153")
    # 6·2 + 5·3 + 4·4 + 3·5 + 2·6 + 1·7 = 77 = 7·11: check (11 - 0) mod 11 = 0
    assert valid("mod11", "1234560")
    # 8·2 + 7·3 + 6·4 + 5·5 + 4·6 + 3·7 + 2·8 + 1·9 = 156, mod 11 = 2: check 9; with the first
    # two digits swapped the sum is 157, whose check would be 8
    assert valid("mod11", "123456789") and not valid("mod11", "213456789")
    # 6·2 = 12, mod 11 = 1: check 10, which no digit can be, so no "6?" is valid
    assert not any(valid("mod11", f"6{d}") for d in range(10))
    assert not valid("mod11", "0") and not valid("mod11", "12345678x")


@pytest.mark.parametrize("scheme", sorted(checkdigits.SCHEMES))
def test_every_one_digit_change_is_caught(scheme: str) -> None:
    number = "1234567"
    number += checkdigits.SCHEMES[scheme](number) or ""
    assert valid(scheme, number)
    for at in range(len(number)):
        for digit in "0123456789".replace(number[at], ""):
            assert not valid(scheme, number[:at] + digit + number[at + 1 :])
