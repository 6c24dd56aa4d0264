"""The fault-injection suite's tally: every test adds the faults it injected and the clips it checked, and the
run's summary closes with one line that counts them (``pytest_terminal_summary``)."""

from collections import Counter

import pytest

TALLY: Counter = Counter()
FAULT_KINDS = ("kill -9", "power-cut damage", "concurrent run", "bad row", "non-finite clip")


@pytest.fixture(scope="session")
def tally() -> Counter:
    return TALLY


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    faults = sum(TALLY[kind] for kind in FAULT_KINDS)
    if not faults:
        return
    kinds = ", ".join(f"{TALLY[kind]} {kind}" for kind in FAULT_KINDS if TALLY[kind])
    verdict = "all passed" if exitstatus == 0 else "SOME FAILED (see above)"
    terminalreporter.write_line(
        f"fault injection: {faults} faults injected ({kinds}); {TALLY['clips']} clips checked whole, each listed "
        f"once in a valid manifest; {verdict}")
