"""The shape of the code: one package, layers without cycles, thin commands, one vocabulary."""
import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from debugsim import cli
from debugsim.sim import probes, registry, session
from debugsim.sim.callbacks import Callback, CallbackList, UnknownEvent

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = ("sim", "scenarios")


def _modules() -> dict[str, Path]:
    found = {"debugsim": ROOT / "__init__.py", "debugsim.cli": ROOT / "cli.py"}
    for folder in PACKAGE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(("debugsim", *parts))] = path
    return found


def _imports(name: str, path: Path, known) -> set[str]:
    """Every project module `name` imports at run time, also inside functions."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):            # `if TYPE_CHECKING:` imports never run
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            node.body = []
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            module = (f"{base}.{node.module}" if node.module else base) if node.level \
                else node.module
            targets |= {module, *(f"{module}.{alias.name}" for alias in node.names)}
        elif isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
    return {t for t in targets if t in known and t != name}


def test_no_import_cycles_among_the_projects_modules():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}

    def reaches(start, goal, seen):
        return any(n == goal or (n not in seen and not seen.add(n) and reaches(n, goal, seen))
                   for n in graph[start])

    cycles = sorted(f"{a} -> {b} -> ... -> {a}" for a in graph for b in graph[a]
                    if reaches(b, a, set()))
    assert not cycles, "\n".join(cycles)


def test_nothing_outside_the_engines_asks_which_engine_it_is():
    offenders = []
    for path in [ROOT / "cli.py", *(ROOT / "sim").rglob("*.py")]:
        if "engines" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if ".engine ==" in line or "engine !=" in line or '"plan" in' in line:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_the_installed_package_exposes_only_debugsim(tmp_path):
    code = ("import importlib.util as u\n"
            "print(','.join(m for m in ('sim', 'cli', 'scenarios') if u.find_spec(m)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr


def _commands(group, prefix=""):
    for name, command in sorted(group.commands.items()):
        yield f"{prefix}{name}", command
        if hasattr(command, "commands"):
            yield from _commands(command, f"{prefix}{name} ")


@pytest.mark.parametrize("name, command", list(_commands(cli.cli)), ids=lambda v: str(v))
def test_commands_are_thin(name, command):
    """A command parses, calls the app layer and prints: at most 15 lines of body."""
    if hasattr(command, "commands") or command.callback.__module__ != cli.__name__:
        pytest.skip("a command group, or a command from its own module")
    source = inspect.getsource(command.callback)
    body = ast.parse(source).body[0].body
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]                                            # the docstring
    lines = body[-1].end_lineno - body[0].lineno + 1
    assert lines <= 15, f"{name}: {lines} lines"


def test_every_probe_declares_itself_and_appears_in_the_help():
    for probe in probes.all_probes():
        for attribute in ("NAME", "USAGE", "HELP", "ENGINES", "run"):
            assert hasattr(probe, attribute), f"{probe.__name__} lacks {attribute}"
    for scenario in registry.all_scenarios():
        text = " ".join(session.help_text(scenario).split())          # unwrapped
        for probe in probes.for_scenario(scenario):
            assert probe.USAGE in text and probe.HELP in text


def test_a_probe_module_is_all_it_takes(tmp_path, monkeypatch):
    """Adding a probe touches one module: the registry finds it, the prompt runs it."""
    module = tmp_path / "echo_probe.py"
    module.write_text('NAME = "echo"\nUSAGE = "echo WORDS"\nHELP = "say it back"\n'
                      'ENGINES = ("training",)\n'
                      'def run(result, args, plot_dir):\n    return " ".join(args)\n')
    monkeypatch.setattr(probes, "__path__", [*probes.__path__, str(tmp_path)])
    monkeypatch.setattr(probes, "_probes", None)
    scenario = registry.get("bad_lr")
    assert "echo WORDS" in session.help_text(scenario)
    assert probes.find("echo", scenario) is not None
    assert probes.find("echo", registry.get("oom_13b")) is None      # other engine


def test_a_misspelt_event_is_an_error_not_a_silent_hook():
    class Typo(Callback):
        def on_stepend(self, run):
            pass

    with pytest.raises(UnknownEvent, match="did you mean 'on_step_end'"):
        CallbackList([Typo()])
    with pytest.raises(UnknownEvent):
        CallbackList([]).fire("on_step_ned", None)


def test_a_signal_row_with_a_measure_is_recorded(monkeypatch):
    """Adding a signal touches sim/signals.py: a row whose `measure` the Recorder calls."""
    from debugsim.sim import app, runs, telemetry
    from debugsim.sim.signals import Signal
    doubled = Signal("doubled_step", "twice the step", "steps", measure=lambda run: 2 * run.step)
    monkeypatch.setattr(telemetry, "MEASURED", (doubled,))
    runs.clear_cache()                        # a cached run would predate the new signal
    result = app.simulate("bad_lr", 0, settings={"steps": 6})
    runs.clear_cache()
    assert [r["doubled_step"] for r in result.records] == [0, 2, 4, 6, 8, 10]


def test_every_package_folder_is_installed():
    """A non-editable install ships only the packages pyproject.toml lists."""
    import tomllib
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    folders = {".".join(("debugsim", *p.parent.relative_to(ROOT).parts))
               for folder in PACKAGE_DIRS for p in (ROOT / folder).rglob("__init__.py")}
    assert folders <= listed, f"not in pyproject.toml: {sorted(folders - listed)}"
