"""Progress lines as docker draws them."""

from __future__ import annotations

import io

from berth.images import progress

D = "sha256:" + "ab12" * 16


def test_sizes_and_bars_look_like_dockers() -> None:
    assert progress.human_size(0) == "0B"
    assert progress.human_size(1050) == "1.05kB"
    assert progress.human_size(12_345_678) == "12.3MB"
    assert progress.human_size(50_000_000) == "50MB"
    line = progress.bar(12_000_000, 50_000_000)
    assert line == "[" + "=" * 12 + ">" + " " * 38 + "] 12MB/50MB"
    assert progress.bar(5, 5).startswith("[" + "=" * 50 + ">]")
    assert progress.bar(1234, None) == "1.23kB"


def test_plain_lines_only_when_the_status_changes() -> None:
    out = io.StringIO()
    with progress.for_stream(out, tty=False) as p:
        p("", "1: Pulling from x/y")
        p(D, "Pulling fs layer")
        p(D, "Downloading", 1, 10)
        p(D, "Downloading", 5, 10)
        p(D, "Pull complete")
    assert out.getvalue() == ("1: Pulling from x/y\nab12ab12ab12: Pulling fs layer\n"
                              "ab12ab12ab12: Pull complete\n")


def test_terminal_lines_are_drawn_by_rich() -> None:
    out = io.StringIO()
    with progress.for_stream(out, tty=True) as p:
        assert isinstance(p, progress.TerminalProgress)
        p("", "1: Pulling from x/y")
        p(D, "Downloading", 25, 100)
    text = out.getvalue()
    assert "1: Pulling from x/y" in text
    assert "ab12ab12ab12: Downloading " in text and "25B/100B" in text


def test_bars_only_on_wide_terminals() -> None:
    for width, want_bar in ((80, False), (120, True)):
        p = progress.TerminalProgress(io.StringIO())
        p.console.width = width
        p(D, "Downloading", 25, 100)
        assert ("[" in p._render().plain) is want_bar


def test_throttle_passes_status_changes_and_the_last_byte() -> None:
    seen: list[tuple] = []
    t = progress.Throttle(lambda *a: seen.append(a), interval=60)
    t(D, "Downloading", 1, 10)
    t(D, "Downloading", 2, 10)  # dropped: too soon
    t(D, "Downloading", 10, 10)  # the end always passes
    t(D, "Pull complete")
    assert seen == [(D, "Downloading", 1, 10), (D, "Downloading", 10, 10),
                    (D, "Pull complete", None, None)]
