"""The sans-IO menu session, as transcripts: lines in, outputs out, actions run on a fake registry."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from menufake import FakeActions, run_action, shipped_menus

from d3hb.errors import NotFound, Refused
from d3hb.menu.model import (
    BACK, Echo, Exit, Message, Mode, Prompt, Result, RunAction, ShowChoices, ShowForm, ShowHelp, ShowMenu, ShowOutput,
)  # fmt: skip
from d3hb.menu.session import Session, parse_sample

MENUS = shipped_menus()


def describe(o: object) -> str:
    if isinstance(o, ShowMenu):
        return f"menu {o.menu.title} [{o.server}]{'' if o.full else ' again'}"
    if isinstance(o, Prompt):
        return f"prompt {o.text}" + (f" [{o.default}]" if o.default else "")
    if isinstance(o, Message):
        return f"{o.level}: {o.text}"
    if isinstance(o, RunAction):
        words = [o.purpose, o.name, *o.request.args, *(f"{k}={v}" for k, v in o.request.fields.items())]
        return " ".join(words) + (" (confirmed)" if o.confirmed else "")
    if isinstance(o, ShowForm):
        return f"form {o.title} at {o.current or 'review'}"
    if isinstance(o, ShowChoices):
        return f"choices {', '.join(o.choices)}"
    if isinstance(o, ShowHelp):
        return f"help {o.title}"
    if isinstance(o, ShowOutput):
        return f"output {o.title}{' with chart' if o.chart else ''}"
    if isinstance(o, Echo):
        return f"echo {o.text}"
    if isinstance(o, Exit):
        return f"exit {o.status}"
    raise AssertionError(o)


class Driver:
    """Plays lines into a session and runs what it asks on the fake, like a front end without I/O."""

    def __init__(self, fake: FakeActions | None = None, start: str = "hot-backup", servers=None) -> None:
        self.fake = fake or FakeActions()
        self.session = Session(shipped_menus(self.fake), start, servers)
        self.outputs: list[object] = []
        self.log: list[str] = []
        self._play(self.session.start())

    def _play(self, outs) -> None:
        pending = deque(outs)
        while pending:
            o = pending.popleft()
            self.outputs.append(o)
            self.log.append(describe(o))
            if isinstance(o, RunAction):
                pending.extendleft(reversed(self.session.done(o.id, run_action(self.fake, o))))

    def feed(self, *lines: str) -> list[str]:
        self.log = []
        self.outputs = []
        for line in lines:
            self._play(self.session.feed(line))
        return self.log

    def last(self, kind: type):
        return [o for o in self.outputs if isinstance(o, kind)][-1]


def test_start_selects_the_only_server_and_shows_the_main_menu():
    d = Driver()
    assert d.log == ["capture hot-backup.list", "menu Hot Backup Main Menu [hbs]", "prompt Enter option:"]
    assert d.session.header().server == "hbs"


def test_start_with_two_servers_selects_none():
    d = Driver(FakeActions(hb_servers=["hbm", "hbs"]))
    assert d.session.server is None and d.log[-2] == "menu Hot Backup Main Menu [None]"


@pytest.mark.parametrize(("option", "action"), [
    ("1", "hot-backup.status"), ("2", "hot-backup.query"), ("3", "hot-backup.start"), ("5", "hot-backup.show"),
    ("6", "hot-backup.statistics"), ("7", "hot-backup.queue"),
])  # fmt: skip
def test_main_menu_options_run_their_action_on_the_selected_server(option, action):
    d = Driver()
    log = d.feed(option)
    chart = " with chart" if option in ("6", "7") else ""
    label = MENUS.menus["hot-backup"].item(int(option)).label
    assert log == [f"output {label}{chart}", f"run {action} hbs", "menu Hot Backup Main Menu [hbs] again", "prompt Enter option:"]
    assert d.fake.calls[-1].server == "hbs"


def test_an_option_by_its_label():
    d = Driver()
    assert "run hot-backup.start hbs" in d.feed("start server")


def test_no_server_selected_says_where_to_select_one_and_runs_nothing():
    d = Driver(FakeActions(hb_servers=[]))
    log = d.feed("3")
    assert log == ["error: Start Server: no server is selected; select one with 9 Special Operations, 1 Setup Server, 4 Select Server",
                   "prompt Enter option:"]  # fmt: skip
    assert d.fake.names() == ["hot-backup.list"]
    assert d.feed("7")[:2] == ["output Display queue with chart", "run hot-backup.queue"], "Display queue works without a server"


@pytest.mark.parametrize("bad", ["42", "0", "abc", "-1", "9.5"])
def test_bad_option_is_a_message_and_nothing_changes(bad):
    d = Driver()
    before = list(d.session.stack)
    log = d.feed(bad)
    assert log == [f"error: No option {bad!r} in Hot Backup Main Menu; enter 1 to 9, ? for help, or X to exit", "prompt Enter option:"]
    assert d.session.stack == before and d.session.mode is Mode.MENU and d.fake.names() == ["hot-backup.list"]


def test_sub_menus_and_back_and_exit():
    d = Driver()
    assert d.feed("8") == ["menu Transaction Log Menu [hbs]", "prompt Enter option:"]
    assert d.feed("x") == ["menu Hot Backup Main Menu [hbs]", "prompt Enter option:"]
    assert d.feed("9", "1") == ["menu Special Operations [hbs]", "prompt Enter option:", "menu Setup Server [hbs]", "prompt Enter option:"]
    assert [m.name for m in d.session.stack] == ["hot-backup", "special", "setup-server"]
    d.feed(BACK, BACK)
    assert d.feed("X") == ["exit 0"]
    assert d.session.mode is Mode.ENDED and d.feed("1") == []


def test_dangerous_option_asks_and_says_what_it_will_do():
    d = Driver()
    d.feed("8")
    log = d.feed("6")
    assert log == ["prompt Clear Log Queue: every queued update not yet acknowledged by the slave is discarded, and the slave will need a resync. Continue? [N]"]
    assert d.feed("maybe") == ["error: Answer Y (yes) or N (no)", log[0]]
    assert d.feed("n") == ["info: Clear Log Queue: not done", "menu Transaction Log Menu [hbs] again", "prompt Enter option:"]
    assert "hot-backup.clear-queue" not in d.fake.names()
    assert d.feed("6", "y")[1:3] == ["output Clear Log Queue", "run hot-backup.clear-queue (confirmed)"]


def test_empty_answer_to_a_confirmation_is_no():
    d = Driver()
    d.feed("4")
    assert d.feed("")[0] == "info: Stop Server: not done"
    assert "hot-backup.stop" not in d.fake.names()


def test_action_failure_goes_to_the_message_section():
    fake = FakeActions()
    fake.on("hot-backup.start", Refused("server 'hbs' is already running", "stop it first"))
    d = Driver(fake)
    assert d.feed("3")[2:] == ["error: server 'hbs' is already running; stop it first", "menu Hot Backup Main Menu [hbs] again", "prompt Enter option:"]


def test_action_with_no_output_says_done():
    fake = FakeActions()
    fake.on("hot-backup.start", [])
    assert "info: Start Server: done" in Driver(fake).feed("3")


def test_help():
    d = Driver()
    d.feed("?")
    help_ = d.last(ShowHelp)
    assert help_.title == "Hot Backup Main Menu" and " 9. Special Operations: Setup Server (new, modify, delete, select) and the TCL prompt" in help_.lines
    d.feed("?3")
    assert d.last(ShowHelp).title == "3. Start Server"
    assert d.session.mode is Mode.MENU and d.fake.names() == ["hot-backup.list"]


# ---------------------------------------------------------------- Setup Server


def _to_setup(d: Driver) -> None:
    d.feed("9", "1")


def test_new_master_server_walks_d3s_fields_with_defaults():
    d = Driver()
    _to_setup(d)
    prompts = []
    answers = {"Server Name": "hbm", "Server Type": "m", "Remote Host name": "slavehost", "Verification code": "s3cret-code"}
    out = d.feed("1")
    while d.session.mode is Mode.FIELD:
        p = d.last(Prompt)
        prompts.append(f"{p.text} [{p.default}]")
        out = d.feed(answers.get(p.text, ""))
    assert prompts == [
        "Server Name []", "Server Type []", "Remote Host name []", "TCP port number [2000]", "Target VME name [pick0]",
        "Check period [10]", "TxLog timer [1]", "Notify list [dm]", "Verification code []", "TLS certificate []", "TLS key []",
        "TLS CA []", "Write time-out []", "Queue cap []", "Batches in flight []", "Batch size []",
    ]  # fmt: skip
    assert out[-1] == "prompt Enter field number to change, Y to save, X to cancel:"
    form = d.last(ShowForm)
    assert [(r.number, r.label, r.value) for r in form.rows][:6] == [
        (1, "Server Name", "hbm"), (2, "Server Type", "M"), (3, "Remote Host name", "slavehost"), (4, "TCP port number", "2000"),
        (5, "Target VME name", "pick0"), (None, "Protocol", "inet"),
    ]  # fmt: skip
    assert form.rows[[r.key for r in form.rows].index("code")].value == "********", "secrets are never shown"
    log = d.feed("y")
    assert log[:2] == ["output Setup Server",
                       "run hot-backup.setup hbm name=hbm type=M host=slavehost port=2000 target=pick0 protocol=inet check=10 txlog=1 notify=dm code=s3cret-code"]  # fmt: skip
    assert log[-2:] == ["menu Setup Server [hbs] again", "prompt Enter option:"]


def test_slave_form_skips_master_only_fields():
    d = Driver()
    _to_setup(d)
    d.feed("1", "hbs", "S")
    asked = []
    while d.session.mode is Mode.FIELD:
        asked.append(d.last(Prompt).text)
        d.feed("")
    assert "Remote Host name" not in asked and "Check period" not in asked
    assert asked[:5] == ["TCP port number", "Log slave update", "Notify list", "Apply updates", "Auto-create"]
    assert "Listen address" in asked


def test_bad_value_names_the_field_and_keeps_what_was_typed():
    d = Driver()
    _to_setup(d)
    d.feed("1", "hbs", "S")
    assert d.feed("80") == ["error: TCP port number: 80 is out of range; a whole number from 1024 to 32767", "prompt TCP port number [2000]"]
    assert d.feed("nine")[0] == "error: TCP port number: 'nine' is not a whole number; a whole number from 1024 to 32767"
    d.feed("2001")
    assert d.last(ShowForm).rows[2].value == "2001"
    assert d.feed("maybe")[0] == "error: Log slave update: 'maybe' is not one of on, off; type one of on, off"


def test_field_help_and_cancel():
    d = Driver()
    _to_setup(d)
    d.feed("1", "hbs")
    log = d.feed("?")
    assert log[0] == "help Server Type" and log[1] == "prompt Server Type"
    assert "Rules: one of M, S; required." in d.last(ShowHelp).lines
    assert d.feed("x") == ["info: Setup Server: cancelled; nothing was changed", "menu Setup Server [hbs] again", "prompt Enter option:"]
    assert "hot-backup.setup" not in d.fake.names()


def test_escaped_x_is_a_value_not_a_cancel():
    d = Driver()
    _to_setup(d)
    d.feed("1", "hbs", "M")
    assert d.feed("\\X")[0] == "form Setup Server at port", "host 'X' is taken"


def test_review_changes_one_field_then_saves():
    d = Driver()
    _to_setup(d)
    d.feed("1", "hbs", "S", *[""] * 20)
    assert d.session.mode is Mode.REVIEW
    assert d.feed("2")[-1] == "prompt Server Type [S]"
    assert d.feed("M")[-1] == "prompt Enter field number to change, Y to save, X to cancel:"
    log = d.feed("y")
    assert log[0] == "error: Remote Host name: a value is required; a host name or IP address"
    assert d.session.mode is Mode.FIELD and d.last(Prompt).text == "Remote Host name"
    d.feed("slavehost")
    assert d.session.mode is Mode.REVIEW
    assert d.feed("99")[0] == "error: Enter a field number from 1 to 16, Y to save, or X to cancel"


def test_modify_server_prefills_from_show_and_keeps_the_name():
    d = Driver()
    _to_setup(d)
    log = d.feed("2")
    assert log[0] == "capture hot-backup.show hbs format=fields"
    values = {r.key: r.value for r in d.last(ShowForm).rows}
    assert values["name"] == "hbs" and values["port"] == "2001" and values["notify"] == "dm,!0"
    assert values["code"] == "", "the stored code is not pre-filled"
    name_row = next(r for r in d.last(ShowForm).rows if r.key == "name")
    assert name_row.readonly and name_row.number is None
    assert d.last(Prompt) == Prompt("Server Type", "field", "S", False, MENUS.forms["server"].field("type").help)
    d.feed(*[""] * 20)
    log = d.feed("y")
    assert log[1] == "run hot-backup.setup hbs name=hbs type=S port=2001 protocol=inet log-slave=off notify=dm,!0 apply=on auto-create=off timeout=30"


def test_failed_save_returns_to_the_review_with_the_values_kept():
    fake = FakeActions()
    fake.on("hot-backup.setup", Refused("field 'code': no verification code", "give code=..."))
    d = Driver(fake)
    _to_setup(d)
    d.feed("2", *[""] * 20)
    log = d.feed("y")
    assert log[2:4] == ["error: field 'code': no verification code; give code=...", "form Setup Server at review"]
    assert d.session.mode is Mode.REVIEW
    assert {r.key: r.value for r in d.last(ShowForm).rows}["port"] == "2001"


def test_modify_for_a_server_that_does_not_exist():
    fake = FakeActions()
    fake.on("hot-backup.show", NotFound("server 'hbs' is not defined", "define it"))
    d = Driver(fake)
    _to_setup(d)
    assert d.feed("2")[1:] == ["error: server 'hbs' is not defined; define it", "menu Setup Server [hbs] again", "prompt Enter option:"]


def test_select_server_by_number_or_name():
    fake = FakeActions(hb_servers=["hbm", "hbs"])
    d = Driver(fake)
    _to_setup(d)
    assert d.feed("4") == ["capture hot-backup.list", "choices hbm, hbs", "prompt Enter number or name:"]
    assert d.feed("3") == ["error: No server number 3; enter 1 to 2, a name, or X", "prompt Enter number or name:"]
    assert d.feed("zz") == ["error: No server 'zz'; enter one of: hbm, hbs", "prompt Enter number or name:"]
    assert d.session.server is None
    assert d.feed("2") == ["info: Server 'hbs' selected", "menu Setup Server [hbs] again", "prompt Enter option:"]
    d.feed("4", "HBM")
    assert d.session.header().server == "hbm"


def test_select_with_nothing_defined():
    d = Driver(FakeActions(hb_servers=[]))
    _to_setup(d)
    assert d.feed("4")[1] == "error: Select Server: no server is set up yet; set one up first (New Server)"


# ---------------------------------------------------------------- tape-socket


def test_tape_socket_menu_works_on_the_default_server_by_name_field():
    d = Driver(start="tape-socket")
    assert d.log == ["menu Tape-socket Menu [default]", "prompt Enter option:"]
    assert d.feed("4")[1] == "run tape-socket.startsend name=default"
    assert d.feed("9")[1] == "run tape-socket.listpipes"


def test_other_server_picks_an_existing_one_and_the_menu_then_manages_it():
    d = Driver(start="tape-socket")
    assert d.feed("14", "1")[-2:] == ["choices default, ssave", "prompt Enter number or name:"]
    assert d.feed("ssave") == ["info: Server 'ssave' selected", "menu Tape-socket Menu [ssave]", "prompt Enter option:"]
    assert d.feed("6")[1] == "run tape-socket.query name=ssave"
    d.feed("14", "2")
    assert d.session.server == "default"


def test_other_server_creates_a_new_one():
    d = Driver(start="tape-socket")
    d.feed("14", "1")
    log = d.feed("nsave")
    assert log == ["capture tape-socket.show name=nsave", "prompt Server 'nsave' does not exist. Create it? [N]"]
    log = d.feed("y")
    assert log[0] == "form Setup tape-socket server at role"
    d.feed("input", "/tmp/nsave.pipe", "0.0.0.0", "3005", "", "")
    log = d.feed("y")
    assert log[:2] == ["output Setup tape-socket server", "run tape-socket.setup name=nsave role=input pipe=/tmp/nsave.pipe host=0.0.0.0 port=3005"]
    assert log[-3:] == ["info: Server 'nsave' selected", "menu Tape-socket Menu [nsave]", "prompt Enter option:"]


def test_other_server_refusing_to_create_stays_in_the_choice():
    d = Driver(start="tape-socket")
    d.feed("14", "1", "nsave")
    assert d.feed("n")[-1] == "prompt Enter number or name:"
    assert d.session.server == "default" and "tape-socket.setup" not in d.fake.names()


def test_tape_socket_setup_prefills_from_show_columns():
    d = Driver(start="tape-socket")
    assert d.feed("2")[0] == "capture tape-socket.show name=default format=fields"
    values = {r.key: r.value for r in d.last(ShowForm).rows}
    assert values == {"name": "default", "role": "output", "pipe": "/tmp/ts.pipe", "host": "rhost", "port": "3000", "callrep": "", "callwait": ""}


# ---------------------------------------------------------------- TCL prompt


def test_tcl_prompt():
    d = Driver()
    assert d.feed("9", "10")[2:] == ["output TCL", "info: TCL: type a command; an empty line or X returns to the menu", "prompt :"]
    assert d.feed('list md "a b"') == ['echo :list md "a b"', "run tcl.list md a b", "prompt :"]
    assert d.fake.calls[-1].request.args == ("md", "a b")
    assert d.feed("hot-backup query hbs x=1")[1] == "run hot-backup.query hbs x=1"
    assert d.feed("sort md")[1:3] == ["run tcl.sort md", "error: unknown command 'tcl.sort'; known tcl commands: count, create-file, list"]
    assert d.feed('list "md')[0].startswith("error: cannot read the command (No closing quotation)")
    assert d.feed("") == ["menu Special Operations [hbs]", "prompt Enter option:"]


# ---------------------------------------------------------------- live data


def test_poll_updates_the_header_and_notices_state_changes():
    fake = FakeActions()
    d = Driver(fake)
    runs = d.session.poll()
    assert [describe(r) for r in runs] == ["state hot-backup.state hbs"]
    assert d.session.poll() == [], "no second poll while one is under way"
    assert d.session.done(runs[0].id, run_action(fake, runs[0])) == []
    assert d.session.header().state == "Reading network  cur 1843 ack 1843"
    fake.state = "Reading network  cur 1900 ack 1899"
    r = d.session.poll()[0]
    assert d.session.done(r.id, run_action(fake, r)) == [], "numbers moving is not news"
    fake.state = "Wait incoming call"
    r = d.session.poll()[0]
    assert d.session.done(r.id, run_action(fake, r)) == [Message("Notice from server 'hbs': Wait incoming call", "notice")]


def test_chart_samples_only_while_a_chart_is_shown():
    fake = FakeActions()
    d = Driver(fake)
    assert [r.purpose for r in d.session.poll()] == ["state"]
    d.session._polls.clear()
    d.feed("7")
    runs = d.session.poll()
    assert [r.purpose for r in runs] == ["state", "sample"]
    for r in runs:
        d.session.done(r.id, run_action(fake, r))
    assert d.session.samples() == (parse_sample("depth=12 lag=3 lag_s=0.25"),)
    d.feed("1")
    assert [r.purpose for r in d.session.poll()] == ["state"]


def test_parse_sample():
    assert parse_sample("depth=4 lag=2 lag_s=1.5").depth == 4
    assert parse_sample("nonsense") is None and parse_sample("depth=x lag=1") is None


def test_input_while_running_and_stale_results():
    d = Driver()
    outs = d.session.feed("3")
    run = outs[-1]
    assert d.session.mode is Mode.RUNNING
    assert d.session.feed("1") == [Message("Start Server is still running; wait for it to end", "error")]
    assert d.session.done(run.id + 100, Result()) == []
    assert describe(d.session.done(run.id, Result(lines=("ok",)))[0]) == "menu Hot Backup Main Menu [hbs] again"


def test_a_missing_start_menu():
    with pytest.raises(NotFound, match="no menu 'nosuch'; menus are: hot-backup, other-server"):
        Session(MENUS, "nosuch").start()


TOKENS = st.sampled_from(["1", "2", "3", "4", "5", "6", "7", "8", "9", "14", "x", "X", BACK, "?", "?2", "", "y", "n", "Y",
                          "hbs", "M", "S", "2001", "80", "abc", "\\X", "list md", "1e9", " 4 "])  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["hot-backup", "tape-socket"]), st.lists(st.one_of(TOKENS, TOKENS, st.text(max_size=8)), max_size=40))
def test_any_input_keeps_the_session_consistent(start, lines):
    d = Driver(start=start)
    for line in lines:
        d.feed(line)
        mode = d.session.mode
        if mode is Mode.ENDED:
            break
        assert mode is not Mode.RUNNING, "every action was reported back"
        assert d.session.stack and d.session.prompt is not None
        if mode is Mode.FIELD:
            assert d.session._form is not None


def test_rejoin_and_failback_forms_run_on_the_selected_server():
    d = Driver()
    d.feed("9", "7")
    answers = {"Promoted system": "backup", "Resync if diverged": "yes"}
    while d.session.mode is Mode.FIELD:
        d.feed(answers.get(d.last(Prompt).text, ""))
    log = d.feed("y")
    assert "run hot-backup.rejoin hbs peer=backup resync=yes" in log
    d.feed("7")  # the form again: an answer that is not a choice is refused in the message section
    d.feed("backup", "", "")
    assert d.feed("maybe")[0].startswith("error:") and d.session.mode is Mode.FIELD
    for _ in range(3):  # X leaves the field, then the form
        if d.session.mode is Mode.MENU:
            break
        d.feed("X")
    assert d.session.mode is Mode.MENU and [c.name for c in d.fake.calls].count("hot-backup.rejoin") == 1, "nothing ran"
    d.feed("8")
    while d.session.mode is Mode.FIELD:
        d.feed({"Main system": "pick0"}.get(d.last(Prompt).text, ""))
    assert "run hot-backup.failback hbs main=pick0 near=100" in d.feed("y")
