"""Delivery reports as the CLI uses them: listen, subscribe, the funnel, the undeliverable file.

Like :mod:`campaign.runner`, nothing here prints or exits: ``cli.py`` calls these and prints
what they return.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from campaign import store
from campaign.api import SociocsClient
from campaign.config import Campaign
from campaign.database import redact
from campaign.delivery import ErrorKind
from campaign.delivery_store import Funnel, failed_deliveries, funnel
from campaign.errors import OutputError, UsageError
from campaign.listener import Listener, OnReport
from campaign.results import write_csv
from campaign.runner import export


def listener_for(
    campaigns: Sequence[Campaign],
    secret: str | None,
    *,
    on_report: OnReport | None = None,
    refresh_every: float = 60.0,
    refresh: bool = True,
    lazy: bool = False,
) -> Listener:
    """A listener recording reports into these campaigns' state files, and (``refresh``)
    rewriting their results files every ``refresh_every`` seconds while reports come, and
    when it stops. ``lazy`` opens the state files at the first report, not at start (a send
    in the same process may still refuse to start, and must then leave no state file).

    Two campaigns that share a state file would record each report twice: refused.
    """
    seen: dict[str, str] = {}
    for c in campaigns:
        where = store.state_ref(c) + (f" {redact(c.state_url)}" if c.state_url else "")
        if where in seen:
            raise UsageError(
                f"Campaigns {seen[where]!r} and {c.name!r} share the state {store.state_label(c)}; list it once."
            )
        seen[where] = c.name
    names = [c.name for c in campaigns]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"Two campaigns are named {twice[0]!r}; give each a different name in its campaign file.")
    by_name = {c.name: c for c in campaigns}

    def rewrite(name: str) -> None:
        campaign = by_name[name]
        state = store.open_state(campaign)
        try:
            if state.last_run() is not None:  # never sent: no results file to show reports in
                export(state, campaign.results)
        except OutputError:
            pass  # the results file is a view; `campaign status --results PATH` writes it elsewhere
        finally:
            state.close()

    return Listener(
        campaigns,
        secret,
        on_report=on_report,
        refresh=rewrite if refresh else None,
        refresh_every=refresh_every,
        lazy=lazy,
    )


def reference_id(campaign: Campaign) -> str:
    """The stable ``subscriber_reference_id`` of a campaign's subscription: the same campaign
    and channel always give the same one, so subscribing again updates instead of adding."""
    digest = hashlib.sha256(f"{campaign.name}\0{campaign.channel_key}".encode()).hexdigest()[:12]
    return f"campaign-{campaign.name[:40]}-{digest}"


@dataclass
class SubscribeReport:
    """What ``campaign subscribe`` did, and the account's subscriptions afterwards."""

    action: str  # "subscribed", "deleted", "not-found", "listed"
    subscription_id: str = ""
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    reference: str = ""


async def subscribe(
    campaign: Campaign,
    api_key: str,
    *,
    url: str | None,
    secret: str | None,
    delete: bool = False,
) -> SubscribeReport:
    """Register ``url`` for the campaign's provider and channel (events ``status_updates``),
    remove the campaign's subscription (``delete``), or only list (no ``url``, no ``delete``).

    Sociocs: ``POST/GET /webhook-subscriptions``, ``DELETE /webhook-subscriptions/{id}``
    (``sociocs-api.md`` section 8). Raises CampaignError when the API refuses.
    """
    if not api_key:
        raise UsageError("Set SOCIOCS_API_KEY to your Sociocs API key to manage webhook subscriptions.")
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(
                f"--url {url!r} is not an http(s) URL; give the address Sociocs can reach, such as "
                "https://hooks.example.com/webhooks/sociocs."
            )
    ref = reference_id(campaign)
    report = SubscribeReport("listed", reference=ref)
    async with SociocsClient(campaign.api_url, api_key, timeout=campaign.sending.timeout, connections=2) as client:
        if delete:
            mine = [s for s in await client.subscriptions() if s.get("subscriber_reference_id") == ref]
            for sub in mine:
                await client.unsubscribe(str(sub.get("id")))
            report.action = "deleted" if mine else "not-found"
            report.subscription_id = ",".join(str(s.get("id")) for s in mine)
        elif url is not None:
            body: dict[str, Any] = {
                "platform": "custom",  # the docs list no values; this integration is our own
                "provider": campaign.provider,
                "channel_key": campaign.channel_key,
                "subscriber_reference_id": ref,
                "webhook_url": url,
                "events": ["status_updates"],
            }
            if secret:
                body["secret"] = secret
            report.subscription_id = await client.subscribe(body)
            report.action = "subscribed"
        report.subscriptions = await client.subscriptions()
    return report


def delivery_funnel(campaign: Campaign) -> Funnel:
    """The campaign's funnel from its state file (UsageError when it was never sent)."""
    state = store.open_existing(campaign)
    try:
        return funnel(state)
    finally:
        state.close()


UNDELIVERABLE_COLUMNS = ("phone", "row", "delivery_status", "delivery_error")


UNDELIVERABLE_ELSEWHERE = "give --export-undeliverable another path."


def export_undeliverable(campaign: Campaign, path: Path) -> int:
    """Write the rows whose delivery failed for good (opted out, unknown number, landline...)
    to ``path``: a CSV whose ``phone`` column makes it a ``suppress`` file for the next
    campaign. Returns the number of numbers written; raises OutputError when ``path`` cannot be
    written."""
    state = store.open_existing(campaign)
    try:
        rows = [d for d in failed_deliveries(state) if d["kind"] is ErrorKind.PERMANENT]
    finally:
        state.close()
    return write_csv(
        path, UNDELIVERABLE_COLUMNS, ([d[c] for c in UNDELIVERABLE_COLUMNS] for d in rows), UNDELIVERABLE_ELSEWHERE
    )
