"""The walkthrough page in a real browser: headless Chromium opens it from file:// with the network
cut off (every request goes to a proxy that this test listens on: beyond what the browser asks for
on its own, measured on a blank page, none may arrive), logs no console message, and shows every
section; a screenshot is written to the test's folder.

CI installs Chromium (`.ci/run`, Debian's ``chromium`` package) and sets ``CI=1``, so there the test
never skips; on a machine without a browser it says what to install and skips.
"""

import contextlib
import os
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from tinygrad_lm import GPT, GPTConfig, walkthrough
from tinygrad_lm.tasks import GrammarTask
from viz import walkthrough as pages

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# The browser's own services (updates, time, push), which it calls at moments of its own choosing even
# with background networking off; a page of ours names no URL at all (tests/test_walkthrough.py).
BROWSER_OWN = re.compile(r"(^|\.)(google\.com|gvt1\.com)$")


def browser() -> str:
    found = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("no Chromium found: .ci/run installs Debian's chromium package for this test")
        pytest.skip("no Chromium on this machine (apt install chromium); CI installs it and runs this test")
    return found


class Proxy:
    """A TCP listener that counts connections: the browser's only way out to any network."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self.requests: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            conn.settimeout(2)
            with contextlib.suppress(OSError):  # (a connection that sends nothing is still counted)
                self.requests.append(conn.recv(200).decode("latin-1").split("\r\n")[0])
            conn.close()

    def close(self) -> None:
        self.server.close()


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    task = GrammarTask()
    model = GPT(GPTConfig(task.vocab_size, task.block_size, n_layer=2, n_head=2, n_embd=16), seed=0)
    example = walkthrough.sentence(task)
    data = walkthrough.trace_step(model, example["ids"], example["targets"], tokens=example["tokens"],
                                  text=example["text"], vocab=example["vocab"])  # fmt: skip
    import viz

    with model.evaluating():
        import numpy as np

        _, loss = model(np.asarray(example["ids"])[None], np.asarray(example["targets"])[None])
    svg = viz.draw_graph(loss, depth=1, expand="transformer.h.0", backward=True).pipe(format="svg", encoding="utf-8")
    return pages.write(tmp_path_factory.mktemp("page") / "walkthrough.html", data, svg)


def run(chrome: str, page: Path, proxy: Proxy, *extra: str) -> subprocess.CompletedProcess:
    command = [chrome, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               # the browser's own background traffic (updates, safe browsing, ...) off: what is left is the page's
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-default-apps", "--disable-extensions", "--disable-client-side-phishing-detection",
               "--disable-domain-reliability", "--no-pings", "--metrics-recording-only", "--no-service-autorun",
               "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter,Translate,"
               "AutofillServerCommunication,CertificateTransparencyComponentUpdater,PrivacySandboxSettings4",
               f"--proxy-server=127.0.0.1:{proxy.port}", "--proxy-bypass-list=<-loopback>",
               "--enable-logging=stderr", "--v=0", *extra, page.as_uri()]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def hosts(requests: list[str]) -> set[str]:
    """The hosts a proxy was asked for ("CONNECT host:443 ...", "GET http://host/...")."""
    found = set()
    for line in requests:
        parts = line.split()
        if len(parts) >= 2:
            found.add(re.sub(r"^https?://", "", parts[1]).split("/")[0].split(":")[0])
    return found


def test_the_page_opens_offline_without_console_messages_and_shows_every_section(page_file, tmp_path):
    chrome = browser()
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><title>blank</title>")
    baseline, proxy = Proxy(), Proxy()
    try:
        run(chrome, blank, baseline, "--dump-dom")  # what the browser fetches on its own (its updates, ...)
        dom = run(chrome, page_file, proxy, "--dump-dom")
        shot = tmp_path / "walkthrough.png"
        run(chrome, page_file, proxy, "--window-size=1280,2400", f"--screenshot={shot}")
    finally:
        baseline.close()
        proxy.close()
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    extra = {h for h in hosts(proxy.requests) - hosts(baseline.requests) if not BROWSER_OWN.search(h)}
    assert not extra, f"the page tried to reach the network: {sorted(extra)}"
    for section in pages.SECTIONS:
        assert re.search(rf"<section id=\"{section}\">", dom.stdout), section
    assert 'id="walkthrough-data"' in dom.stdout
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
