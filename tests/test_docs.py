"""The documentation site: built strictly, every page opened in headless Chromium over a local
HTTP server (no console errors, every internal link and anchor resolves), and every command
the README and the pages show parsed by the real parsers, every spec checked against the
schema."""

import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import jsonschema
import pytest
import yaml

from bench.cli import build_parser
from bench.sweep.spec import json_schema

from .browser import chromium

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def fenced(kind: str) -> list[tuple[Path, str]]:
    return [
        (page, body)
        for page in PAGES
        for lang, body in FENCE.findall(page.read_text())
        if lang == kind
    ]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_the_site_builds_strictly_with_every_page_and_the_generated_reference(site):
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("index.html"))
    assert len(pages) >= 20
    cli = (site / "reference" / "cli" / "index.html").read_text()
    for command in ("bench run", "bench compare", "bench ab", "bench history", "bench check"):
        assert command in cli
    assert "--instrument" in cli  # generated from the parser, not written by hand
    spec = (site / "reference" / "spec" / "index.html").read_text()
    assert "sweep_budget_s" in spec and "instrument" in spec
    python = (site / "reference" / "python" / "index.html").read_text()
    assert "measure_case" in python and "Time, count and weigh" in python  # its docstring


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(site):
    """The built site on a local HTTP server, stopped by its pid at the end."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(site)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/"
    for _ in range(100):
        try:
            urllib.request.urlopen(base, timeout=1)
            break
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    yield base
    server.terminate()
    server.wait(timeout=10)


def test_every_page_opens_without_console_errors_and_its_links_resolve(site, served):
    pages = [
        p.relative_to(site).parent.as_posix() for p in sorted(site.rglob("index.html"))
        if "search" not in p.parts
    ]  # fmt: skip
    ids: dict[str, set[str]] = {}  # page url -> the element ids it holds
    links: list[tuple[str, str]] = []
    driver = chromium(width=1280, height=900)
    try:
        for page in pages:
            url = urljoin(served, "" if page == "." else page + "/")
            driver.get(url)
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert not errors, (page, errors)
            ids[url] = set(driver.execute_script(
                "return Array.from(document.querySelectorAll('[id]')).map(e => e.id)"))  # fmt: skip
            hrefs = driver.execute_script(
                "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)"
            )
            links += [
                (url, href) for href in hrefs if urlparse(href).netloc == urlparse(served).netloc
            ]
            if page == ".":
                driver.save_screenshot(str(site / "front-page.png"))
    finally:
        driver.quit()
    assert len(links) > 100
    broken = []
    for source, href in links:
        target, anchor = urldefrag(href)
        try:
            urllib.request.urlopen(target, timeout=5)
        except urllib.error.HTTPError as error:
            broken.append(f"{source}: {href} ({error.code})")
            continue
        if anchor and target in ids and anchor not in ids[target]:
            broken.append(f"{source}: {href} (no #{anchor} there)")
    assert broken == []


def _commands(body: str) -> list[str]:
    """The `python -m bench ...` commands of a shell block, continuation lines joined."""
    joined = body.replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        line = line.strip()
        match = re.search(r"(?:^|&&\s*)(?:\S*python3?)\s+-m\s+bench\s+(.*)", line)
        if match:
            found.append(match.group(1).split("&&")[0])
    return found


def test_every_bench_command_shown_parses_with_the_real_parsers():
    parser = build_parser()
    checked = 0
    for page, body in fenced("bash"):
        for command in _commands(body):
            argv = shlex.split(command, comments=True)
            for i, arg in enumerate(argv):  # the shell's, not the command's: > file, | tool
                if arg in (">", ">>", "|", "2>", "2>&1", ";"):
                    argv = argv[:i]
                    break
            if any("<" in arg for arg in argv):  # a placeholder such as <run id>
                continue
            try:
                args, unknown = parser.parse_known_args(argv)
                if args.command == "ab" and unknown:  # passed on to `bench run`
                    parser.parse_args(["run", *unknown])
                elif unknown and args.command != "history":
                    raise SystemExit(f"unrecognized: {unknown}")
            except SystemExit as error:
                pytest.fail(f"{page.name}: `python -m bench {command}` does not parse: {error}")
            checked += 1
    assert checked >= 25  # the extraction found the pages' commands


def test_every_spec_shown_is_valid_against_the_schema():
    schema = json_schema()
    checked = 0
    for _page, body in fenced("yaml"):
        data = yaml.safe_load(body)
        if not isinstance(data, dict) or "jobs" in data:  # a GitHub workflow, not a spec
            continue
        jsonschema.validate(data, schema)
        checked += 1
    assert checked >= 1
