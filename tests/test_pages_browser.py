"""The agent desktop and the supervisor wallboard in a real browser (Debian's Chromium,
headless, driven by Playwright) against a real backend and the PBX simulator over AMI:
an agent logs in and goes available, a known customer calls, the pop shows who and the tier
before answer, the pop comes back after a reload and after the API's server went away and
came back mid-call, the agent wraps up with a disposition and a ticket; a supervisor
watches the call go through the wallboard, its figures change, and pauses the agent from
there."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from playwright.sync_api import Page, expect
from sqlalchemy import create_engine, update

import migrations
from bench.browser import BrowserThread, screenshot
from crm_bridge import store
from crm_bridge.schema import customers
from tests.e2e import caller, start_backend, start_simulator
from tickets.store import NewTicket, TicketQuery

QUEUES = {
    "agent_interface": "Local/{agent}@agents",
    "queues": {"sales": {"lanes": ["external"], "ring_timeout": 15, "wrap_up": 60},
               "support": {"lanes": ["support"]}},
    "agents": {"6001": {"name": "Alice", "queues": {"sales": 0}},
               "6002": {"name": "Bob", "queues": {"support": 0}}},
}  # fmt: skip
NUMBER = "+302101234567"
NAME = "Ελένη Παππά"
SHARED = "+48221234567"
UNKNOWN = "+33142681234"
PROFILE = {
    "tier": {"tier": "vip", "reason": "VIP: top 1% by 365-day revenue"},
    "loyalty": {"class": "loyal", "reason": "12 orders in 3 categories"},
    "lifecycle": {"stage": "active", "reason": "ordered 9 days ago"},
    "next_step": {"code": "referral", "step": "Thank them; ask for a referral",
                  "reason": "a loyal VIP"},
}  # fmt: skip
PASSWORD = "page-test-password"
OPEN_TICKET = "Exchange the blue kettle"
#: A subject an agent types, with markup in it: the pages must show it as text.
HOSTILE = 'Refund <img src=x onerror="window.pwned=1"> & <script>window.pwned=2</script>'


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserThread]:
    chromium = BrowserThread()
    yield chromium
    chromium.close()


@pytest.fixture
def center(
    request: pytest.FixtureRequest, reactor: Any, run: Any, tmp_path: Path
) -> Iterator[Any]:
    """The backend; ``request.param``, if any, overrides settings of the sales queue."""
    config: dict[str, Any] = copy.deepcopy(QUEUES)
    config["queues"]["sales"].update(getattr(request, "param", {}))
    queues = tmp_path / "queues.yaml"
    queues.write_text(yaml.safe_dump(config))
    url = f"sqlite:///{tmp_path / 'cc.sqlite3'}"  # the database start_backend uses
    migrations.upgrade(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        store.add_customer(conn, "k1", NAME, [NUMBER], source="test", now=0.0)
        conn.execute(update(customers).values(tier="vip", profile=PROFILE, profiled_at=1.0))
        # Two customers of one household share a number: the agent picks.
        store.add_customer(conn, "h1", "Jan Kowalski", [SHARED], source="test", now=0.0)
        store.add_customer(conn, "h2", "Anna Kowalska", [SHARED], source="test", now=0.0)
    engine.dispose()
    # The agent's phone rings 5 s before the agent answers: the pop is seen ringing.
    simulator = start_simulator(reactor, agent_ring_seconds=5.0)
    app = start_backend(reactor, run, simulator, tmp_path, {
        "CALLCENTER_ACD__QUEUES": str(queues), "CALLCENTER_ACD__LOGIN_AGENTS": "false",
    })  # fmt: skip
    app.accounts.add("6001", PASSWORD, "agent", agent="6001")
    app.accounts.add("sup", PASSWORD, "supervisor")
    # The VIP customer has an open ticket: the pop shows it, the agent links the call to it.
    draft = NewTicket(subject=OPEN_TICKET, category="request", customer_id="k1", queue="sales")
    run(app.tickets.create(draft, by="sup"))
    yield app
    run(app.stop())
    simulator.stopListening()


def close_pages(pages: dict[str, Page]) -> None:
    for page in pages.values():
        page.context.close()


def log_in(page: Page, base: str, username: str, landing: str) -> None:
    page.goto(f"{base}/")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#submit")
    page.wait_for_url(f"**{landing}")


def test_an_agent_takes_a_call_and_a_supervisor_watches_it(
    center: Any, run: Any, browser: BrowserThread, tmp_path: Path
) -> None:
    app = center
    base = f"http://127.0.0.1:{app.api.port}"
    pages: dict[str, Page] = {}
    [open_ticket] = run(app.tickets.search(TicketQuery(customer_id="k1"))).tickets

    def open_pages() -> None:
        pages["sup"] = browser.new_page(1600, 1000)
        log_in(pages["sup"], base, "sup", "/wallboard")
        expect(pages["sup"].locator("#connection")).to_have_text("live")
        row = pages["sup"].locator('#agents [data-agent="6001"] .state')
        expect(row).to_have_text("logged out")
        pages["agent"] = agent = browser.new_page()
        log_in(agent, base, "6001", "/agent")
        expect(agent.locator("#connection")).to_have_text("live")
        agent.click("#go-available")
        expect(agent.locator("#state")).to_have_text("available")
        expect(row).to_have_text("available")

    def ringing_with_the_customer() -> None:
        agent, sup = pages["agent"], pages["sup"]
        # Before answer: the pop names the customer with the tier and its reason.
        expect(agent.locator("#customer-name")).to_have_text(NAME, timeout=15_000)
        expect(agent.locator("#tier-badge")).to_have_text("VIP")
        # All of that while the phone still rings (5 s here), on both pages.
        expect(agent.locator("#pop-state")).to_have_text("ringing")  # not "talking" yet
        expect(sup.locator('#agents [data-agent="6001"] .state')).to_have_text("ringing")
        screenshot(agent, tmp_path, "agent-desktop.png")
        expect(agent.locator("#tier-reason")).to_contain_text("top 1%")
        expect(agent.locator("#open-tickets")).to_contain_text(OPEN_TICKET)
        expect(agent.locator("#next-step")).to_contain_text("referral")
        expect(agent.locator("#pop-queue")).to_have_text("sales")

    def talking_then_reload() -> None:
        agent = pages["agent"]
        expect(agent.locator("#pop-state")).to_have_text("talking", timeout=15_000)
        agent.reload()  # the page comes back with the pop of the call in progress
        expect(agent.locator("#pop-state")).to_have_text("talking")
        expect(agent.locator("#customer-name")).to_have_text(NAME)

    def cut_off() -> None:
        for page in pages.values():
            expect(page.locator("#connection")).to_have_text("reconnecting…")

    def back_with_the_pop() -> None:
        agent = pages["agent"]
        # Both pages reconnect by themselves; the desk gets the call in progress again.
        for page in pages.values():
            expect(page.locator("#connection")).to_have_text("live", timeout=15_000)
        expect(agent.locator("#pop-state")).to_have_text("talking")
        expect(agent.locator("#customer-name")).to_have_text(NAME)

    def wrap_up() -> None:
        agent = pages["agent"]
        expect(agent.locator("#wrapup")).to_be_visible(timeout=20_000)
        expect(agent.locator("#state")).to_have_text("wrap up")
        agent.reload()  # the wrap-up panel comes back: the ACD names the call
        expect(agent.locator("#wrapup")).to_be_visible()
        expect(agent.locator("#wrapup-caller")).to_have_text(NUMBER)
        agent.select_option("#disposition", "resolved")
        agent.click("#save-disposition")
        expect(agent.locator("#wrapup-result")).to_contain_text("Disposition saved")
        agent.select_option("#ticket-category", "complaint")
        subject = agent.locator("#ticket-subject")
        expect(subject).to_have_value(f"Complaint from a call of {NUMBER}")  # prefilled
        agent.fill("#ticket-subject", HOSTILE)
        agent.keyboard.press("Alt+t")  # the shortcut for "create ticket"
        expect(agent.locator("#wrapup-result")).to_contain_text("created")
        agent.fill("#link-ticket-id", str(open_ticket.id))
        agent.keyboard.press("Alt+k")  # the shortcut for "link to ticket"
        expect(agent.locator("#wrapup-result")).to_have_text(
            f"Call linked to ticket {open_ticket.number}"
        )
        listed = agent.locator("#tickets td", has_text="Refund")
        expect(listed).to_have_text(HOSTILE)  # shown as typed, not run as markup
        assert agent.evaluate("window.pwned") is None
        assert agent.locator("#tickets img, #tickets script").count() == 0

    def supervisor_sees_figures_and_pauses() -> None:
        sup = pages["sup"]
        sales = sup.locator('#queues tr[data-queue="sales"]')
        expect(sales.locator("td.slToday")).to_have_text("100%", timeout=15_000)
        expect(sales.locator("td.waiting")).to_have_text("0")
        expect(sales.locator("td.asa")).to_have_text(re.compile(r"^\d+:\d\d$"))  # answered
        row = sup.locator('#agents [data-agent="6001"]')
        expect(row.locator(".state")).to_have_text("wrap up")
        screenshot(sup, tmp_path, "wallboard.png")
        row.locator("button.pause").click()
        sup.fill("#act-reason", "Coaching")
        sup.click("#act-ok")
        expect(row.locator(".state")).to_have_text("paused")
        expect(row.locator(".reason")).to_have_text("Coaching")
        expect(pages["agent"].locator("#state")).to_have_text("paused", timeout=10_000)

    def supervisor_reports_and_moves() -> None:
        sup = pages["sup"]
        # Today's chart is read again from the history once the call is counted.
        expect(sup.locator("#interval-chart rect.answered")).to_have_count(1, timeout=15_000)
        sup.click('nav .tab[data-tab="report"]')
        sup.click("#report-form button[type=submit]")
        queues = sup.locator("#report-queues")
        expect(queues.locator("tbody tr").first).to_contain_text("sales")
        expect(sup.locator("#report-tiers")).to_contain_text("vip")
        expect(sup.locator("#report-queues-chart rect.answered")).to_have_count(2)  # both queues
        screenshot(sup, tmp_path, "report.png")
        expect(sup.locator("#report-agents")).to_contain_text("resolved 1")  # the disposition
        with sup.expect_download() as download:
            sup.click('.csv[data-by="queue"]')
        csv = Path(download.value.path()).read_text(encoding="utf-8")
        assert csv.splitlines()[0].startswith("queue,") and "\nsales," in csv
        sup.keyboard.press("Alt+3")  # the staffing view
        sup.select_option("#staffing-queue", "sales")
        sup.click("#staffing-form button[type=submit]")
        expect(sup.locator("#staffing tbody tr")).to_have_count(1)  # the one busy interval
        expect(sup.locator("#staffing-chart rect.needed")).to_have_count(96)  # the whole day
        sup.keyboard.press("Alt+1")
        # Move Bob into sales too: his row follows, from the feed.
        bob = sup.locator('#agents [data-agent="6002"]')
        bob.locator("button.move").click()
        sup.check('#act-queues input[value="sales"]')
        sup.fill('#act-queues input[name="penalty-sales"]', "2")
        sup.click("#act-ok")
        expect(bob.locator(".queues")).to_have_text("support, sales")
        sup.fill("#agent-filter", "sales")
        expect(sup.locator("#agent-rows > div:visible")).to_have_count(2)
        sup.fill("#agent-filter", "paused")
        expect(sup.locator("#agent-rows > div:visible")).to_have_count(1)

    async def go() -> None:
        await browser.do(open_pages)
        # The caller hangs up 16 s after dialling: 5 s ringing, then talking.
        await app.ami.send_action("Originate", caller(NUMBER, "Eleni", "5003", 16))
        await browser.do(ringing_with_the_customer)
        await browser.do(talking_then_reload)
        # The API goes away mid-call (a restart of its server) and comes back.
        port = app.api.port
        await app.api.stop()
        await browser.do(cut_off)
        await app.api.start("127.0.0.1", port)
        await browser.do(back_with_the_pop)
        await browser.do(wrap_up)
        await browser.do(supervisor_sees_figures_and_pauses)
        await browser.do(supervisor_reports_and_moves)

    try:
        run(go(), timeout=120)
    finally:
        run(browser.do(close_pages, pages))
    assert (tmp_path / "agent-desktop.png").stat().st_size > 10_000


@pytest.mark.parametrize("center", [{"wrap_up": 0}], indirect=True)
def test_an_agent_picks_among_candidates_and_creates_an_unknown_caller(
    center: Any, run: Any, browser: BrowserThread
) -> None:
    app = center
    base = f"http://127.0.0.1:{app.api.port}"
    pages: dict[str, Page] = {}

    def available() -> None:
        pages["agent"] = agent = browser.new_page()
        log_in(agent, base, "6001", "/agent")
        agent.keyboard.press("Alt+a")  # the shortcut for "available"
        expect(agent.locator("#state")).to_have_text("available")

    def pick_the_second_candidate() -> None:
        agent = pages["agent"]
        candidates = agent.locator("#candidates .pick")
        expect(candidates).to_have_count(2, timeout=15_000)
        expect(agent.locator("#customer")).to_be_hidden()
        second = candidates.nth(1).text_content() or ""
        agent.keyboard.press("Alt+2")
        expect(agent.locator("#customer-name")).to_have_text(second.split(". ", 1)[1])
        expect(agent.locator("#choose")).to_be_hidden()
        expect(agent.locator("#pop-state")).to_have_text("ended", timeout=20_000)

    def create_the_unknown_caller() -> None:
        agent = pages["agent"]
        form = agent.locator("#new-customer")
        expect(form).to_be_visible(timeout=20_000)
        expect(agent.locator("#caller-number")).to_have_text(UNKNOWN)
        agent.fill("#new-customer-name", "Camille Martin <b>new</b>")
        agent.fill("#new-customer-email", "camille@example.org")
        form.locator("button").click()
        expect(agent.locator("#customer-name")).to_have_text("Camille Martin <b>new</b>")
        expect(form).to_be_hidden()

    async def go() -> None:
        await browser.do(available)
        await app.ami.send_action("Originate", caller(SHARED, "Kowalski", "5003", 8))
        await browser.do(pick_the_second_candidate)
        await app.ami.send_action("Originate", caller(UNKNOWN, "Camille", "5003", 8))
        await browser.do(create_the_unknown_caller)

    try:
        run(go(), timeout=90)
    finally:
        run(browser.do(close_pages, pages))
    found = run(app.crm.lookup(UNKNOWN))
    assert [c["name"] for c in found] == ["Camille Martin <b>new</b>"]
