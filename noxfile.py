"""nox sessions: `nox -s lint` and `nox -s tests` (what CI runs), `nox -s slow`, `nox -s bench`."""

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session(python=False)
def lint(session):
    """ruff with the rules and thresholds in pyproject.toml ([tool.ruff])."""
    session.run("python", "-m", "ruff", "check", "hoi_cli", "bench", "tests", *session.posargs)


@nox.session(python=False)
def tests(session):
    """The default (fast) test suite, in the current environment."""
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=False)
def slow(session):
    """Slow tests too (real-data accuracy, long clips)."""
    session.run("python", "-m", "pytest", "-m", "not gpu", *session.posargs)


@nox.session(python=False)
def bench(session):
    """Every benchmark under bench/ (prints ratios against a peer measured in the same run)."""
    import glob

    for script in sorted(glob.glob("bench/bench_*.py")):
        session.run("python", script, *session.posargs)
