"""``examples/fastapi_shop`` against ``scanpay demo`` (real processes, real HTTP): the shop
registers its endpoint, sells, is paid through the simulator and fulfils once, also when
the webhook is delivered again; ``scanpay listen`` forwards events signed with the secret it
printed; ``scanpay trigger order.paid`` makes one happen."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
import uvicorn

from tests.service_env import child_environ
from tests.simulator.live import free_port
from tests.webhooks.receiver import check_signed, serve_receiver

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi_shop" / "shop.py"
CLI = [sys.executable, "-m", "scanpay.cli.main"]


def _wait(check: Any, what: str, within: float = 120.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            found = check()
        except httpx.HTTPError:
            found = None
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {within} s")


@contextmanager
def running_demo(data_dir: Path) -> Iterator[tuple[str, str, str]]:
    port, sim_port = free_port(), free_port()
    proc = subprocess.Popen(
        [*CLI, "demo", "--port", str(port), "--simulator-port", str(sim_port),
         "--data-dir", str(data_dir)],
        env=child_environ(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url, sim_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sim_port}"
    try:
        _wait(lambda: httpx.get(f"{url}/healthz").status_code == 200, "the demo start")
        yield url, sim_url, (data_dir / "shop_api_key").read_text().strip()
    finally:
        proc.terminate()
        proc.wait(20)


@contextmanager
def running_example(scanpay_url: str, key: str, db: Path) -> Iterator[str]:
    spec = importlib.util.spec_from_file_location("example_shop", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    port = free_port()
    shop_url = f"http://127.0.0.1:{port}"
    app = module.create_shop(scanpay_url, key, shop_url, str(db))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    _wait(lambda: server.started, "the example shop start")
    try:
        yield shop_url
    finally:
        server.should_exit = True
        thread.join(10)


def _line(stream: IO[str], within: float = 60.0) -> str:
    found: list[str] = []
    reader = threading.Thread(target=lambda: found.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(within)
    assert found, "no line from the process"
    return found[0]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_example_shop_listen_and_trigger_against_the_demo(tmp_path: Path) -> None:
    with (
        running_demo(tmp_path / "demo") as (url, sim_url, key),
        running_example(url, key, tmp_path / "shop.sqlite3") as shop_url,
        serve_receiver() as receiver,
    ):
        auth = {"Authorization": f"Bearer {key}"}
        endpoints = httpx.get(f"{url}/api/webhook-endpoints", headers=auth).json()["items"]
        assert [e["url"] for e in endpoints] == [f"{shop_url}/webhooks"]
        listen = subprocess.Popen(
            [*CLI, "listen", "--forward-to", receiver.url, "--service", url, "--api-key", key,
             "--events", "order.paid", "--max-events", "2", "--poll", "0.2"],
            env=child_environ(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert listen.stdout is not None
            ready = _line(listen.stdout)
            if not ready:  # it ended before its first line: say why (its stderr)
                listen.wait(10)
                assert listen.stderr is not None
                ready = f"exit {listen.returncode}: {listen.stderr.read()}"
            assert ready.startswith("Ready! Your webhook signing secret is whsec_"), ready
            secret = ready.split(" is ", 1)[1].split(" ", 1)[0]
            # the shopper buys: the shop creates the order and sends them to the checkout
            bought = httpx.post(f"{shop_url}/buy")
            assert bought.status_code == 303
            checkout = bought.headers["location"]
            assert checkout.startswith(f"{url}/checkout/ord_")
            order_id = checkout.rsplit("/", 1)[1]
            order = httpx.get(f"{url}/api/orders/{order_id}", headers=auth).json()
            assert httpx.get(f"{shop_url}/orders/{order_id}").json()["fulfilled"] is False
            paid = httpx.post(f"{sim_url}/sim/pay", json={"code_url": order["code_url"]})
            assert paid.status_code == 200, paid.text
            _wait(lambda: httpx.get(f"{shop_url}/orders/{order_id}").json()["fulfilled"],
                  "fulfilment")  # fmt: skip
            # the same event delivered again: still fulfilled once
            events = httpx.get(f"{url}/api/events?type=order.paid", headers=auth).json()
            [event] = [e for e in events["items"] if e["data"]["id"] == order_id]
            again = httpx.post(f"{url}/api/events/{event['id']}/resend", headers=auth)
            assert again.status_code == 202

            def delivered_twice() -> bool:
                detail = httpx.get(f"{url}/api/events/{event['id']}", headers=auth).json()
                history = detail["deliveries"][0]["history"]
                return [a["status_code"] for a in history] == [204, 204]

            _wait(delivered_twice, "the second delivery")
            assert httpx.get(f"{shop_url}/orders/{order_id}").json()["fulfilments"] == 1
            # scanpay trigger makes another order.paid happen
            trigger = subprocess.run(
                [*CLI, "trigger", "order.paid", "--service", url, "--simulator", sim_url,
                 "--api-key", key],
                env=child_environ(), capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert trigger.returncode == 0, trigger.stderr
            assert "is paid" in trigger.stdout
            out, err = listen.communicate(timeout=120)
        finally:
            if listen.poll() is None:
                listen.kill()
                listen.wait()
            for pipe in (listen.stdout, listen.stderr):  # (a failure left them open)
                if pipe is not None:
                    pipe.close()
        assert listen.returncode == 0, err
        lines = [line for line in out.splitlines() if "-->" in line]
        assert len(lines) == 2
        assert all("order.paid" in line and "<-- 200" in line for line in lines)
        messages = receiver.wait_for(2)
        check_signed(messages, secret)
        assert messages[0].json["data"]["id"] == order_id
        assert key not in out + err
