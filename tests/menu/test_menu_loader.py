"""Menu files: every shipped one loads, names only contract actions, and bad ones are named by file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from menufake import CONTRACT, FakeActions, shipped_menus

from d3hb.errors import D3hbError
from d3hb.menu import loader
from d3hb.menu.loader import MenuFileError, _Lines, builtin_dir, load_menus, menu_sources
from d3hb.menu.registry import load_actions

SHIPPED = ("hot-backup", "txlog", "special", "setup-server", "tape-socket", "other-server")


def test_every_shipped_menu_file_loads():
    menus = shipped_menus()
    assert set(SHIPPED) <= set(menus.menus)
    files = sorted(p.stem for p in Path(builtin_dir()).glob("*.toml"))
    assert files == sorted(menus.menus), "each file in menus/ is one menu"


def test_menus_name_only_contract_actions():
    named = set(shipped_menus().actions())
    assert named - CONTRACT == set()


def test_menu_actions_registered():
    registry = load_actions()
    missing = sorted(n for n in shipped_menus().actions() if n not in registry)
    assert missing == []


def test_main_menu_is_d3s_order():
    main = shipped_menus().menus["hot-backup"]
    assert [(i.number, i.label) for i in main.items] == [
        (1, "Status"), (2, "Query Server"), (3, "Start Server"), (4, "Stop Server"), (5, "Show Server"),
        (6, "Show statistics"), (7, "Display queue"), (8, "Transaction log menu"), (9, "Special Operations"),
    ]  # fmt: skip
    assert main.item(8).menu == "txlog" and main.item(9).menu == "special"


def test_txlog_menu_dangerous_options_confirm_and_say_what_they_do():
    txlog = shipped_menus().menus["txlog"]
    labels = [i.label for i in txlog.items]
    assert labels == ["Display queue", "Log DL files only", "Log ALL files", "Stop enqueuing", "Start enqueueing", "Clear Log Queue"]
    for label in ("Log ALL files", "Stop enqueuing", "Clear Log Queue"):
        item = txlog.find(label)
        assert item.confirm and len(item.confirm) > 40 and item.confirm.rstrip().endswith("?")


def test_setup_server_form_has_d3s_fields_in_d3s_order_then_d3hbs():
    form = shipped_menus().forms["server"]
    labels = [f.label for f in form.fields]
    d3 = ["Server Name", "Server Type", "Remote Host name", "TCP port number", "Target VME name", "Protocol",
          "Log slave update", "Check period", "TxLog timer", "Notify list", "Apply updates"]  # fmt: skip
    assert labels[: len(d3)] == d3
    assert [f.key for f in form.fields][11:16] == ["auto-create", "code", "tls-cert", "tls-key", "tls-ca"]
    assert form.field("protocol").readonly and form.field("protocol").default == "inet"
    assert form.field("port").default == "2000" and (form.field("port").minimum, form.field("port").maximum) == (1024, 32767)
    assert form.field("code").secret
    assert all(f.help for f in form.fields), "every field has help for '?'"


def test_tape_socket_menu_options():
    ts = shipped_menus().menus["tape-socket"]
    assert [i.label for i in ts.items] == [
        "Status", "Setup", "Show", "Start output server", "Start input server", "Query", "Check remote", "Drain pipe",
        "List pipes", "Stop", "Shutdown", "Traces on", "Traces off", "Other Server",
    ]  # fmt: skip
    assert shipped_menus().scopes["tape-socket"].default_server == "default"


def test_every_item_and_field_has_help():
    menus = shipped_menus()
    for menu in menus.menus.values():
        for item in menu.items:
            assert item.help.strip(), f"{menu.name} item {item.number}"


def test_known_group_with_unknown_action_is_an_error(tmp_path: Path):
    fake = FakeActions()
    _write(tmp_path, "hot-backup.toml", '''
        [menu]
        title = "Main"
        [[item]]
        number = 1
        label = "Status"
        action = "hot-backup.statuss"
    ''')  # fmt: skip
    with pytest.raises(MenuFileError) as err:
        load_menus([tmp_path], registry=fake.registry)
    assert "hot-backup.toml line 6" in str(err.value) and "unknown action 'hot-backup.statuss'" in str(err.value)
    assert "known hot-backup actions" in str(err.value)


def test_group_not_installed_yet_is_only_logged(tmp_path: Path, caplog):
    from d3hb.menu.registry import Registry

    _write(tmp_path, "m.toml", '[menu]\ntitle = "M"\n[[item]]\nnumber = 1\nlabel = "A"\naction = "nosuch.verb"\n')
    menus = load_menus([tmp_path], registry=Registry())
    assert "m" in menus.menus and "nosuch" in caplog.text


BAD = {
    "duplicate number": ('''
        [menu]
        title = "M"
        [[item]]
        number = 1
        label = "A"
        action = "hot-backup.status"
        [[item]]
        number = 1
        label = "B"
        action = "hot-backup.query"
    ''', "line 7", "item number 1 is used twice (also line 3)"),
    "gap in numbers": ('''
        [menu]
        title = "M"
        [[item]]
        number = 1
        label = "A"
        action = "hot-backup.status"
        [[item]]
        number = 3
        label = "B"
        action = "hot-backup.query"
    ''', "line 7", "2 is missing, item 3 is beyond"),
    "dangling sub-menu": ('''
        [menu]
        title = "M"
        [[item]]
        number = 1
        label = "A"
        menu = "nowhere"
    ''', "line 3", "opens menu 'nowhere', which does not exist"),
    "unknown key": ('''
        [menu]
        title = "M"
        [[item]]
        number = 1
        label = "A"
        acton = "hot-backup.status"
    ''', "line 6", "unknown key 'acton'"),
    "two kinds": ('''
        [menu]
        title = "M"
        [[item]]
        number = 1
        label = "A"
        action = "hot-backup.status"
        menu = "m"
    ''', "line 3", "exactly one of action, menu, form, select, tcl"),
    "wrong type": ('''
        [menu]
        title = "M"
        [[item]]
        number = "one"
        label = "A"
        action = "hot-backup.status"
    ''', "line 4", "'number' in item 1 must be a whole number"),
    "server without scope": ('''
        [menu]
        title = "M"
        [[item]]
        number = 1
        label = "A"
        action = "hot-backup.status"
        server = "required"
    ''', "line 3", "uses the selected server but the menu has no scope"),
    "undefined form": ('''
        [menu]
        title = "M"
        [[item]]
        number = 1
        label = "A"
        form = "nosuch"
    ''', "line 3", "uses form 'nosuch', which is not defined"),
    "bad default": ('''
        [menu]
        title = "M"
        [[item]]
        number = 1
        label = "A"
        form = "f"
        [form.f]
        title = "F"
        action = "hot-backup.setup"
        [[form.f.field]]
        key = "port"
        label = "Port"
        kind = "int"
        min = 1024
        max = 32767
        default = "80"
    ''', "line 16", "(port): the default breaks the field's own rules (Port: 80 is out of range)"),
    "when names a later field": ('''
        [form.f]
        title = "F"
        action = "hot-backup.setup"
        [[form.f.field]]
        key = "host"
        label = "Host"
        when = { type = "M" }
        [[form.f.field]]
        key = "type"
        label = "Type"
    ''', "line 7", "'when' names 'type', which is not an earlier field"),
    "form args not a field": ('''
        [form.f]
        title = "F"
        action = "hot-backup.setup"
        args = ["nmae"]
        [[form.f.field]]
        key = "name"
        label = "Name"
    ''', "line 4", "args names 'nmae', which is not a field"),
    "bad action name": ('''
        [menu]
        title = "M"
        [[item]]
        number = 1
        label = "A"
        action = "Status"
    ''', "line 6", "action name 'Status' in item 1 is not valid"),
    "bad select option": ('''
        [menu]
        title = "M"
        scope = "s"
        [scope]
        name = "s"
        [[item]]
        number = 1
        label = "A"
        select = { lst = "hot-backup.list" }
    ''', "line 9", "unknown key 'lst' in item 1 select"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_menu_files_are_named_by_file_and_line(tmp_path: Path, case: str):
    text, line, what = BAD[case]
    path = _write(tmp_path, "m.toml", text)
    with pytest.raises(MenuFileError) as err:
        load_menus([tmp_path], registry=FakeActions().registry)
    message = str(err.value)
    assert message.startswith(f"{path} {line}: "), message
    assert what in message
    assert ";" in message, "one line: what was wrong; what to do"


def test_toml_syntax_error_names_the_file(tmp_path: Path):
    path = _write(tmp_path, "m.toml", '[menu]\ntitle = "M\n')
    with pytest.raises(MenuFileError, match=f"^{path}: not valid TOML: .*line 2"):
        load_menus([tmp_path])


def test_site_directory_replaces_and_adds_menus(tmp_path: Path):
    site = tmp_path / "menus"
    _write(site, "hot-backup.toml", (Path(builtin_dir()) / "hot-backup.toml").read_text().replace('"Hot Backup Main Menu"', '"Our Hot Backup"'))
    _write(site, "night.toml", '[menu]\ntitle = "Night jobs"\n[[item]]\nnumber = 1\nlabel = "Queue"\naction = "hot-backup.queue"\n')
    menus = load_menus(home=tmp_path, registry=FakeActions().registry)
    assert menus.menus["hot-backup"].title == "Our Hot Backup"
    assert menus.menus["night"].title == "Night jobs"
    assert menus.menus["txlog"].title == "Transaction Log Menu"


def test_menu_sources_later_directory_wins(tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a, "x.toml", "")
    _write(b, "x.toml", "")
    _write(a, "y.toml", "")
    found = menu_sources([a, b, tmp_path / "missing"])
    assert Path(str(found["x"])).parent == b and Path(str(found["y"])).parent == a


def test_builtin_dir_falls_back_to_the_checkout(monkeypatch):
    import importlib.resources

    def missing(name):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(importlib.resources, "files", missing)
    assert Path(str(loader.builtin_dir())) == Path(__file__).resolve().parents[2] / "menus"


def test_no_menu_files_at_all(tmp_path: Path):
    with pytest.raises(D3hbError, match="no menu files found"):
        load_menus([tmp_path / "empty"], home=tmp_path)


def test_line_finder_skips_multiline_strings_and_arrays():
    text = textwrap.dedent('''
        [menu]
        help = """
        number = 99
        """
        choices = [
          "a = b",
        ]
        [[item]]
        number = 1
        [[item]]
        number = 2
        select = { list = "x.y" }
        [form.f]
        [[form.f.field]]
        key = "a"
    ''')
    lines = _Lines(text)
    assert lines.find(("menu",), "help") == 3
    assert lines.find(("menu",), "number") == 2  # not the one inside the string
    assert lines.find(("item", 1), "number") == 12
    assert lines.find(("item", 1, "select"), "list") == 13  # inline table: the key naming it
    assert lines.find(("form", "f", "field", 0), "key") == 16
    assert lines.find(("item", 5)) == 0


def _write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path
