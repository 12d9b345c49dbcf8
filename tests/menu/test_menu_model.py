"""Form field rules declared as data: choices, ranges, patterns, required; errors name the field."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from d3hb.menu.model import Field, FieldError, Menu, Item, fill


PORT = Field("port", "TCP port number", kind="int", minimum=1024, maximum=32767, required=True)
TYPE = Field("type", "Server Type", choices=("M", "S"), required=True)
NAME = Field("name", "Server Name", pattern="[A-Za-z]{1,8}", pattern_help="1 to 8 letters")
CHECK = Field("check", "Check period", kind="number", minimum=0.1, maximum=86400)


@given(st.integers(1024, 32767))
def test_ports_in_range_are_taken_as_typed(port):
    assert PORT.check(f" {port} ") == str(port)


@given(st.one_of(st.integers(max_value=1023), st.integers(min_value=32768)))
def test_ports_out_of_range_are_refused_naming_the_field(port):
    with pytest.raises(FieldError, match=r"^TCP port number: -?\d+ is out of range; a whole number from 1024 to 32767"):
        PORT.check(str(port))


@pytest.mark.parametrize("value", ["abc", "20.5", "", "1e3", "9" * 400])
def test_not_a_whole_number(value):
    with pytest.raises(FieldError, match="^TCP port number: "):
        PORT.check(value)


def test_choices_are_case_blind_and_canonical():
    assert TYPE.check("m") == "M" and TYPE.check(" S ") == "S"
    with pytest.raises(FieldError, match="^Server Type: 'X' is not one of M, S; type one of M, S"):
        TYPE.check("X")


def test_pattern_and_its_words():
    assert NAME.check("hbslave") == "hbslave"
    with pytest.raises(FieldError, match="^Server Name: 'hb-1' is not valid; 1 to 8 letters$"):
        NAME.check("hb-1")
    assert NAME.check("") == "", "not required: empty is fine"


def test_numbers_and_their_limits():
    assert CHECK.check("0.5") == "0.5"
    for bad in ("0", "nan", "86401", "-1", "inf", "1e999"):
        with pytest.raises(FieldError, match="^Check period: "):
            CHECK.check(bad)


def test_max_length():
    f = Field("code", "Verification code", max_length=4)
    with pytest.raises(FieldError, match="too long"):
        f.check("12345")


def test_when_conditions():
    host = Field("host", "Remote Host name", when=(("type", "M"),))
    assert host.applies({"type": "m"}) and not host.applies({"type": "S"}) and not host.applies({})


def test_rules_in_words():
    assert PORT.rules() == "a whole number from 1024 to 32767; required"
    assert TYPE.rules() == "one of M, S; required"


def test_fill_puts_the_server_in():
    assert fill("Stop server '{server}'?", "hbs") == "Stop server 'hbs'?"
    assert fill("{server} {x}", None) == " {x}"


def test_menu_finds_items_by_number_or_label():
    menu = Menu("m", "M", (Item(1, "Status", action="a.b"), Item(2, "Start Server", action="a.c")))
    assert menu.find("2").label == "Start Server"
    assert menu.find("start server").number == 2
    assert menu.find("9") is None and menu.find("nothing") is None


@given(st.text(max_size=30))
def test_any_text_is_taken_or_refused_naming_the_field(text):
    for field in (PORT, TYPE, NAME, CHECK):
        try:
            field.check(text)
        except FieldError as exc:
            assert str(exc).startswith(field.label + ": ")
