"""One scheduler process for the multi-process tests and the benchmark.

    python -u -m tests.scheduler._replica_main DATABASE_URL REDIS_URL PREFIX SLACK_API_URL

Runs the real leader-elected :class:`SchedulerService` (built by ``switchboard.scheduling``) over
real services, with a zero-latency scripted model, posting to ``SLACK_API_URL`` over HTTP.
Prints ``ready``, then ``leader <unix time>`` / ``standby <unix time>`` on every change
of role, until SIGTERM (clean stop) or SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from datetime import timedelta

from bot.slack.client import create_web_client
from scheduler.service import SchedulerConfig
from switchboard.scheduling import build_scheduler
from switchboard.services import open_services
from switchboard.settings import Settings
from tests.fakes.chat import ScriptedChatModel


async def main(database_url: str, redis_url: str, prefix: str, slack_url: str) -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SWITCHBOARD_REDIS_PREFIX": prefix,
            "SWITCHBOARD_PII_KEY": "test-pii-key",
            "SWITCHBOARD_AUDIT_KEY": "test-audit-key-0123456789abcdef-0123",
        }
    )
    model = ScriptedChatModel(default="Scheduled answer.")
    config = SchedulerConfig(
        lease_ttl=timedelta(seconds=1.5),
        poll_interval=0.1,
        resync_interval=2.0,
        min_interval=timedelta(seconds=1),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with open_services(settings, model_factory=lambda _n: model, env={}) as services:
        client = create_web_client(token="xoxb-fake-token", base_url=slack_url, backoff=0.01)
        service = build_scheduler(services, client=client, config=config)
        await service.start()
        print("ready", flush=True)
        leading = False
        while not stop.is_set():
            if service.is_leader != leading:
                leading = service.is_leader
                print(f"{'leader' if leading else 'standby'} {time.time():.3f}", flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.02)
        await service.stop()
        print(f"stopped {time.time():.3f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
