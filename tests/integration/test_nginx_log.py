"""Debian's real nginx writing the pasted `NGINX_LOG_FORMAT`, and the `Tailer` following its
access log across the real logrotate (rename + SIGUSR1, and copytruncate) and a restart.

No Kafka: nginx proxies to two upstreams of the test on loopback; the client sees each
request's `$request_id` (nginx adds it as `X-Request-Id`), which is what matches requests to log
lines.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from pipeline.collect.access_log import AccessEntry, parse_nginx_json
from pipeline.collect.tail import Tailer
from tests.support.nginx import Nginx, Route, Sent, Upstream, logrotate, send_requests
from tests.support.worker_procs import wait_for

ROUTES = {"/fail": Route(status=500), "/slow": Route(delay_s=0.05)}
PATHS = ["/", "/api/items", "/fail", "/slow"]
HOSTS = ("api.example.test", "shop.example.test")


def _parsed_log(path: Path) -> list[AccessEntry]:
    return [parse_nginx_json(line) for line in path.read_bytes().splitlines()]


def test_every_line_of_real_nginx_parses_into_the_request_the_client_made(
    tmp_path: Path,
) -> None:
    with (
        Upstream("a", ROUTES) as up_a,
        Upstream("b", ROUTES) as up_b,
        Nginx(tmp_path / "nginx", {h: [up_a, up_b] for h in HOSTS}) as nginx,
    ):
        started = time.time()
        sent: list[Sent] = []
        for host in HOSTS:
            sent += send_requests(nginx.url, host, PATHS, 25)
        nginx.wait_logged(sent[-1].request_id)
        finished = time.time()

        entries = _parsed_log(nginx.log_path)  # every line parses, or this raises
        by_id = {e.request_id: e for e in entries}
        ids = [e.request_id for e in entries]
        assert len(sent) == 50
        assert Counter(ids) == Counter(s.request_id for s in sent), "each request exactly once"
        assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids), "nginx's own $request_id"

        served_by = {up_a.address: up_a.ids(), up_b.address: up_b.ids()}
        assert all(served_by.values()), f"round robin reached both upstreams: {served_by}"
        for s in sent:
            e = by_id[s.request_id]
            assert e.status == s.status == ROUTES.get(s.path, Route()).status, s
            assert (e.host, e.route) == (s.host, s.path)
            assert e.upstream in served_by, e
            assert s.request_id in served_by[e.upstream], f"{e.upstream} served {s.request_id}"
            assert s.body == f"{'a' if e.upstream == up_a.address else 'b'} {s.path}\n".encode()
            assert e.bytes_out > len(s.body), "bytes_sent counts the headers too"
            assert e.bytes_in > 0
            assert e.latency_ms >= (50 if s.path == "/slow" else 0), e
            assert e.client_ip == "127.0.0.1"
            # msec has millisecond resolution: allow the rounding at either end
            assert started - 0.001 <= e.finished_at.timestamp() <= finished + 0.001, e
        assert up_a.count + up_b.count == 50, "no retries: proxy_next_upstream stays default"


class Collector:
    """A collector's read loop over the tailer: parse, hand on, commit the batch's end."""

    def __init__(self, log: Path, checkpoint: Path) -> None:
        self.log, self.checkpoint = log, checkpoint
        self.tailer = Tailer(log, checkpoint)
        self.seen: list[str] = []

    def poll(self, max_lines: int = 10_000) -> int:
        batch = self.tailer.read(max_lines)
        self.seen += [parse_nginx_json(line).request_id for line, _ in batch]
        if batch:
            self.tailer.commit(batch[-1][1])
        return len(batch)

    def until(self, sent: list[Sent], what: str, timeout: float = 10) -> None:
        want = {s.request_id for s in sent}

        def done() -> bool:
            self.poll(max_lines=7)  # small batches: positions land mid-file
            return want <= set(self.seen)

        wait_for(done, timeout, f"the tailer to return {what}", every=0.02)

    def restart(self) -> None:
        self.tailer.close()
        self.tailer = Tailer(self.log, self.checkpoint)


def test_the_tailer_follows_nginx_across_real_logrotate_and_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "logrotate"
    with (
        Upstream("a", ROUTES) as up_a,
        Upstream("b", ROUTES) as up_b,
        Nginx(tmp_path / "nginx", {h: [up_a, up_b] for h in HOSTS}) as nginx,
    ):
        log = nginx.log_path
        usr1 = f"kill -USR1 {nginx.pid}"
        c = Collector(log, tmp_path / "access.pos")
        sent: list[Sent] = []

        def send(n: int, host: str = HOSTS[0]) -> list[Sent]:
            batch = send_requests(nginx.url, host, PATHS, n)
            sent.extend(batch)
            return batch

        # 1. logrotate renames, its postrotate signals nginx; unread lines are left behind
        send(12)
        nginx.wait_logged(sent[-1].request_id)
        c.poll(max_lines=5)
        logrotate(log, state, mode="rename", postrotate=usr1, compress=True)
        send(12, HOSTS[1])
        c.until(sent, "the renamed file's rest, then the new file")

        # 2. renamed, nginx signalled later: it goes on writing to the renamed file meanwhile
        logrotate(log, state, mode="rename", compress=True)
        late = send(6)
        c.until(late, "the lines nginx still wrote to the renamed file")
        assert log.stat().st_size == 0, "nginx has not reopened yet"
        nginx.reopen(wait=True)
        send(6)
        c.until(sent, "the new file once nginx reopened")

        # 3. a collector restart; rotated while it was down: its file is found as <log>.1
        send(10)
        nginx.wait_logged(sent[-1].request_id)
        c.poll(max_lines=4)
        c.tailer.close()
        logrotate(log, state, mode="rename", postrotate=usr1, compress=True)
        send(6, HOSTS[1])
        c.restart()
        c.until(sent, "the rest of the file rotated during the restart, then the new one")

        # 4. copytruncate while running (nginx keeps its descriptor: no signal)
        send(10)
        nginx.wait_logged(sent[-1].request_id)  # a line after the copy would be lost
        c.poll(max_lines=3)
        logrotate(log, state, mode="copytruncate", compress=True)
        send(10)
        c.until(sent, "the copy's lines after the position, then the truncated file")

        # 5. copytruncate during a restart (the truncated log already regrown)
        send(8, HOSTS[1])
        nginx.wait_logged(sent[-1].request_id)
        c.poll(max_lines=3)
        c.tailer.close()
        logrotate(log, state, mode="copytruncate", compress=True)
        send(4)
        c.restart()
        c.until(sent, "the copy's rest after the restart, then the truncated file")
        c.tailer.close()

        assert len(sent) == 84
        repeats = [i for i, n in Counter(c.seen).items() if n > 1]
        assert not repeats, f"{len(repeats)} lines returned twice"
        assert c.seen == [s.request_id for s in sent], "every request once, in the log's order"
        rotated = sorted(p.name for p in log.parent.iterdir())
        assert rotated == [f"access.log{s}" for s in ("", ".1", ".2.gz", ".3.gz", ".4.gz", ".5.gz")]


def test_copytruncate_of_lines_logged_since_the_tailer_saw_the_log_empty(tmp_path: Path) -> None:
    with (
        Upstream("a", ROUTES) as up_a,
        Nginx(tmp_path / "nginx", {HOSTS[0]: [up_a]}) as nginx,
    ):
        c = Collector(nginx.log_path, tmp_path / "access.pos")
        assert c.poll() == 0  # the new log is empty (as after a copytruncate with no traffic)
        sent = send_requests(nginx.url, HOSTS[0], PATHS, 5)
        nginx.wait_logged(sent[-1].request_id)
        logrotate(nginx.log_path, tmp_path / "logrotate", mode="copytruncate")
        sent += send_requests(nginx.url, HOSTS[0], PATHS, 3)
        nginx.wait_logged(sent[-1].request_id)
        c.until(sent[-3:], "the truncated log's 3 lines")
        lost = [s.request_id for s in sent[:5] if s.request_id not in c.seen]
        assert not lost, f"{len(lost)} of the 5 lines in the copy never returned"
        assert c.seen == [s.request_id for s in sent]
