"""``callcenter customers import`` (crm_bridge.importer) on SQLite and PostgreSQL: a good
file, bad files with every problem and its line and nothing written, duplicate ids, shared
numbers as notes, orders imported twice, the progress bar."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from callcenter.cli import main
from crm_bridge import store
from crm_bridge.errors import ImportRejected
from crm_bridge.importer import ProgressBar, import_files
from crm_bridge.schema import customer_numbers, customers, orders

NOW = 1_780_000_000.0  # 2026-05-28

CUSTOMERS = """\
id,name,numbers,email,first_seen
k1,Jürgen Müller,030 1234567;+49 151 23456789,jm@example.de,2023-01-15
k2,"Dubois, Élodie",030 1234567,,
k3,王伟,+86 131 2345 6789,,2024-02-01T10:00:00+08:00
"""
ORDERS = """\
customer_id,ref,at,amount,category
k1,A1,2024-05-31,19.99,books
k1,A2,2024-06-30T14:05:00+02:00,-5.00,books
k3,,2025-01-01 08:00,1200,garden
"""


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Path:
    path = tmp_path / "callcenter.yaml"
    path.write_text(f"database:\n  url: {database_url}\ncrm:\n  default_region: DE\n")
    return path


def _file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _counts(url: str) -> tuple[int, int, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        got = tuple(
            conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (customers, customer_numbers, orders)
        )
    engine.dispose()
    return got  # type: ignore[return-value]


def _import(config: Path, *args: str) -> int:
    return main(["--config", str(config), "--log-level", "WARNING", "customers", "import", *args])


def test_a_good_file_is_imported_with_a_summary_and_shared_numbers_noted(
    tmp_path: Path, config: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    people = _file(tmp_path, "customers.csv", CUSTOMERS)
    bought = _file(tmp_path, "orders.csv", ORDERS)
    assert _import(config, str(people), "--orders", str(bought)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        f"note: {people} line 3: number +49301234567 is also that of customer 'k1' (a shared "
        "line: a call from it lists both)"
    )
    assert out[1].startswith("imported 3 customers (4 numbers), 3 orders in ")
    engine = create_engine(database_url)
    with engine.connect() as conn:
        assert [c.id for c in store.candidates_for(conn, "+49301234567")] == ["k1", "k2"]
        k2 = store.customer(conn, "k2")
        assert k2 is not None and k2.name == "Dubois, Élodie" and k2.email is None
        history = store.history_of(conn, ["k1", "k3"])
    engine.dispose()
    k1 = history["k1"]
    assert k1.first_seen == 1_673_740_800.0  # 2023-01-15 UTC
    assert [(o.at, o.amount, o.category) for o in k1.orders] == [
        (1_717_113_600.0, Decimal("19.99"), "books"),  # 2024-05-31 UTC
        (1_719_749_100.0, Decimal("-5.00"), "books"),  # 14:05 at +02:00
    ]
    assert history["k3"].first_seen == 1_706_752_800.0  # 10:00 at +08:00
    assert history["k3"].orders[0].amount == Decimal("1200")


def test_a_bad_file_reports_every_problem_with_its_line_and_writes_nothing(
    tmp_path: Path, config: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    people = _file(
        tmp_path,
        "customers.csv",
        "id,name,numbers,email,first_seen\n"
        "b1,,030 1234567,,\n"  # line 2
        "b2,Ok Name,12;abc,not-an-email,yesterday\n"  # line 3
        "b2,Twice,030 7654321,,\n"  # line 4
        "\n"  # line 5: blank, skipped
        "b3,Fine,+4930111222,,2999-01-01\n"  # line 6
        "b4,Short row\n"  # line 7
        "b5,Good,+30 210 123 4567,,\n",  # line 8
    )
    bought = _file(
        tmp_path,
        "orders.csv",
        "customer_id,ref,at,amount,category\n"
        "b5,R1,2024-01-01,12.345,books\n"  # line 2
        "b5,R1,2024-01-02,1,books\n"  # line 3: ref twice
        "ghost,,2024-01-01,1,books\n"  # line 4
        "b5,,31/12/2024,1e3,\n"  # line 5
        "b5,,2024-01-01,0,books\n"  # line 6
        "b1,,2024-01-01,5,books\n",  # line 7: its customer's row is bad, reported there
    )
    assert _import(config, str(people), "--orders", str(bought)) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "callcenter customers import: nothing imported, 15 problems:",
        f"  {people} line 2: name is empty",
        f"  {people} line 3: numbers: phone number '12': too short (a local number without "
        "its area code?) for DE",
        f"  {people} line 3: numbers: phone number 'abc': not a phone number",
        f"  {people} line 3: email 'not-an-email': not an address (name@domain)",
        f"  {people} line 3: first_seen 'yesterday': not an ISO 8601 date or time (e.g. "
        "2024-05-31 or 2024-05-31T14:05:00+02:00)",
        f"  {people} line 4: customer id 'b2' is already on line 3",
        f"  {people} line 6: first_seen '2999-01-01' is in the future",
        f"  {people} line 7: 2 fields, the header has 5 (id, name, numbers, email, first_seen)",
        f"  {bought} line 2: amount '12.345': a number with a dot and at most 2 decimals, e.g. "
        "19.99 (negative for a refund)",
        f"  {bought} line 3: order ref 'R1' of customer 'b5' is already on line 2",
        f"  {bought} line 4: customer 'ghost' is neither in the customers file nor in the database",
        f"  {bought} line 5: category is empty",
        f"  {bought} line 5: at '31/12/2024': not an ISO 8601 date or time (e.g. 2024-05-31 "
        "or 2024-05-31T14:05:00+02:00)",
        f"  {bought} line 5: amount '1e3': a number with a dot and at most 2 decimals, e.g. "
        "19.99 (negative for a refund)",
        f"  {bought} line 6: amount 0: an order has an amount (negative for a refund)",
    ]
    assert _counts(database_url) == (0, 0, 0)


def test_duplicate_ids_against_the_database_reject_the_whole_file(
    tmp_path: Path, config: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _import(config, str(_file(tmp_path, "first.csv", CUSTOMERS))) == 0
    before = _counts(database_url)
    again = _file(
        tmp_path,
        "second.csv",
        "id,numbers,name\nnew1,+4930999888,Neu Kunde\nk2,,Élodie again\nk3,,王伟\n",
    )
    assert _import(config, str(again)) == 1
    err = capsys.readouterr().err
    assert f"{again} line 3: customer id 'k2' exists already in the database" in err
    assert f"{again} line 4: customer id 'k3' exists already in the database" in err
    assert _counts(database_url) == before  # new1 was not imported either


def test_orders_alone_for_known_customers_and_twice_adds_nothing(
    tmp_path: Path, config: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _import(config, str(_file(tmp_path, "c.csv", CUSTOMERS))) == 0
    empty = _file(tmp_path, "none.csv", "id,name,numbers\n")
    bought = _file(tmp_path, "o.csv", ORDERS)
    assert _import(config, str(empty), "--orders", str(bought)) == 0
    assert _import(config, str(empty), "--orders", str(bought)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith(
        "imported 0 customers (0 numbers), 1 orders, 2 orders skipped (already imported)"
    )  # the order without a ref cannot be told from a new one
    assert _counts(database_url)[2] == 4


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty; the first line names the columns: id,name,numbers,email,first_seen "
             "(email, first_seen optional)"),
        ("id,name,phone\n", "line 1: unknown column 'phone'; column 'numbers' missing"),
        ("id,name,numbers,id\n", "line 1: column 'id' twice"),
    ],
)  # fmt: skip
def test_a_file_without_the_right_header_says_which_columns(
    tmp_path: Path, database_url: str, text: str, problem: str
) -> None:
    import migrations

    migrations.upgrade(database_url)
    engine = create_engine(database_url)
    path = _file(tmp_path, "c.csv", text)
    with pytest.raises(ImportRejected) as caught:
        import_files(engine, path, region="DE", now=NOW)
    engine.dispose()
    assert caught.value.problems[0].startswith(f"{path}{'' if problem[0] == 'e' else ' '}")
    assert problem in caught.value.problems[0]


def test_unreadable_and_non_utf8_files_are_rejected(tmp_path: Path, database_url: str) -> None:
    import migrations

    migrations.upgrade(database_url)
    engine = create_engine(database_url)
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("id,name,numbers\nx,Jürgen,\n".encode("latin-1"))
    with pytest.raises(ImportRejected, match="1 problem") as caught:
        import_files(engine, latin1, region="DE", now=NOW)
    assert "not UTF-8 text" in caught.value.problems[0]
    with pytest.raises(ImportRejected) as caught:
        import_files(engine, tmp_path / "missing.csv", region="DE", now=NOW)
    assert caught.value.problems == [f"{tmp_path / 'missing.csv'}: cannot read it (No such file "
                                     "or directory)"]  # fmt: skip
    engine.dispose()


def test_too_many_problems_are_capped_with_a_count(
    tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = "".join(f"c{i},,\n" for i in range(60))
    assert _import(config, str(_file(tmp_path, "c.csv", "id,name,numbers\n" + rows))) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "callcenter customers import: nothing imported, 60 problems:"
    assert len(err) == 52 and err[-1] == "  ... and 10 more"


def test_a_bad_default_region_is_a_config_error(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(f"database:\n  url: {database_url}\ncrm:\n  default_region: XX\n")
    assert _import(config, str(_file(tmp_path, "c.csv", CUSTOMERS))) == 2
    assert "region 'XX': not a country" in capsys.readouterr().err


def test_the_progress_bar_redraws_on_a_terminal() -> None:
    clock = iter([0.0, 0.05, 0.2, 0.3, 0.4])
    out = io.StringIO()
    bar = ProgressBar(out, tty=True, clock=lambda: next(clock))
    bar("writing orders", 0, 200)
    bar("writing orders", 50, 200)  # 0.05 s later: not redrawn
    bar("writing orders", 100, 200)
    bar("writing orders", 200, 200)  # finished: drawn and ended
    bar("writing more", 1, 1)
    assert out.getvalue() == (
        "\rwriting orders [..............................]   0% (0 of 200)"
        "\rwriting orders [###############...............]  50% (100 of 200)"
        "\rwriting orders [##############################] 100% (200 of 200)\n"
        "\rwriting more [##############################] 100% (1 of 1)\n"
    )


def test_the_progress_bar_prints_periodic_lines_elsewhere() -> None:
    times = iter([0.0, 1.0, 6.0, 7.0, 12.0, 13.0])
    out = io.StringIO()
    bar = ProgressBar(out, tty=False, every=5.0, clock=lambda: next(times))
    for done in (0, 10, 60, 70, 120):
        bar("checking orders.csv", done, 130)
    bar("checking orders.csv", 130, 130)
    assert out.getvalue() == (
        "checking orders.csv:  46% (60 of 130)\nchecking orders.csv:  92% (120 of 130)\n"
    )
