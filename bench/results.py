"""Writes one section of bench/RESULTS.md, replacing the previous version of that section."""
import os

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")


def write_section(heading, section):
    """`heading` is the section's '## ...' line prefix; `section` its full text starting with that heading."""
    existing = open(PATH).read() if os.path.exists(PATH) else "# Benchmark results\n"
    start = existing.find(heading)
    if start >= 0:
        end = existing.find("\n## ", start + 1)
        existing = existing[:start] + section.rstrip("\n") + "\n" + (existing[end:] if end >= 0 else "")
    else:
        existing = existing.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    with open(PATH, "w") as f:
        f.write(existing)
