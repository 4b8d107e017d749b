"""notebooks/*.ipynb are the only source of the notebooks: thin, committed without outputs, their
parameters what the callers pass, and still thin after a user edits and saves one in JupyterLab.

Thin: the first code cell, tagged ``parameters``, holds only literal assignments (papermill
overrides them); every other code cell is a few lines of calls into the package, with no
definitions, loops, branches (``if``, conditional expressions, ``and``/``or``), comparisons
or comprehensions: that logic belongs in ``inferlab`` where it is tested once.
"""

from __future__ import annotations

import ast
import hashlib
import re
import shutil
from pathlib import Path

import nbformat
import papermill as pm
import pytest
from IPython.core.inputtransformer2 import TransformerManager

from inferlab.report import catalog, render

ROOT = Path(__file__).resolve().parents[2]
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))
SWEEP_NOTEBOOKS = ("10-matrix-sweep", "11-stress")
MAX_LINES = 6
FORBIDDEN = {
    ast.FunctionDef: "def", ast.AsyncFunctionDef: "async def", ast.ClassDef: "class", ast.Lambda: "lambda",
    ast.For: "for loop", ast.AsyncFor: "for loop", ast.While: "while loop", ast.If: "if statement",
    ast.IfExp: "conditional expression", ast.BoolOp: "and/or", ast.Compare: "comparison", ast.With: "with",
    ast.AsyncWith: "with", ast.Try: "try", ast.Match: "match", ast.ListComp: "comprehension",
    ast.SetComp: "comprehension", ast.DictComp: "comprehension", ast.GeneratorExp: "comprehension",
    ast.Global: "global", ast.Nonlocal: "nonlocal",
}


def _python(source: str) -> ast.Module:
    """A cell as Python: IPython magics (``%matplotlib inline``) become plain calls first."""
    return ast.parse(TransformerManager().transform_cell(source))


def thinness_problems(nb: nbformat.NotebookNode) -> list[str]:
    """Everything that makes a notebook not thin; [] when it is."""
    problems = []
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    if len(tagged) != 1:
        return [f"{len(tagged)} cells tagged `parameters`; exactly one is needed"]
    params = tagged[0]
    if code[0] is not params:
        problems.append("the `parameters` cell must be the first code cell (papermill injects right after it)")
    names = set()
    for stmt in _python(params.source).body:
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else None
        if not isinstance(target, ast.Name):
            problems.append(f"parameters: `{ast.unparse(stmt)}` is not `name = literal`")
            continue
        try:
            ast.literal_eval(stmt.value)
        except ValueError:
            problems.append(f"parameters: `{ast.unparse(stmt)}`: not a literal; derive values in the package")
        names.add(target.id)
    for cell in code:
        if cell is params:
            continue
        lines = [ln for ln in cell.source.splitlines() if ln.strip()]
        if len(lines) > MAX_LINES:
            problems.append(f"cell {cell.get('id')}: {len(lines)} lines (> {MAX_LINES}): move the logic into inferlab")
        tree = _python(cell.source)
        for node in ast.walk(tree):
            if type(node) in FORBIDDEN:
                problems.append(f"cell {cell.get('id')}: {FORBIDDEN[type(node)]} in `{ast.unparse(node)[:80]}`: "
                                "move it into inferlab, one call per cell")
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id in names:
                problems.append(f"cell {cell.get('id')}: reassigns parameter `{node.id}` (papermill's value would "
                                "be overwritten)")
    return problems


def commit_problems(nb: nbformat.NotebookNode) -> list[str]:
    """Outputs, execution counts, missing or duplicate cell ids, invalid nbformat."""
    problems = []
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        problems.append(f"invalid notebook: {exc.message}")
    ids = [c.get("id") for c in nb.cells]
    if None in ids or len(set(ids)) != len(ids):
        problems.append(f"cell ids missing or repeated: {ids}")
    for c in nb.cells:
        if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None):
            problems.append(f"cell {c.get('id')}: outputs or execution count committed "
                            "(Edit > Clear Outputs of All Cells, then save)")
    return problems


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _digest() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(NB_DIR.glob("*.ipynb"))}


def test_the_notebooks_are_there():
    assert {p.stem for p in NOTEBOOKS} == {"00-deploy", "10-matrix-sweep", "11-stress", "20-load-test-report",
                                          "21-stress-report", "30-compare", "40-tune-report"}
    for report in catalog.NOTEBOOKS:
        assert catalog.notebook_path(report).is_file(), report


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_thin(path):
    assert thinness_problems(_read(path)) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    nb = _read(path)
    assert commit_problems(nb) == []
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "a title first"
    assert nb.metadata.kernelspec.name == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_sees_every_parameter(path):
    """papermill.inspect_notebook skips a line it cannot parse (e.g. a comment holding `=`): such a
    parameter could not be passed, so every assignment must be declared."""
    nb = _read(path)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assigned = [s.targets[0].id for s in _python(cell.source).body]
    assert list(pm.inspect_notebook(str(path))) == assigned


def _render_jobs() -> list[catalog.Job]:
    """Every shape of job catalog.py makes: the sample set, one run, a two-run comparison and a tune
    (no tune record ships: tests/sweep/test_tune.py renders its report from a record it builds)."""
    sample = catalog.jobs_for("sample")
    runs = [j.parameters["run_id"] for j in sample if "run_id" in j.parameters]
    return [*sample, *catalog.jobs_for(runs[0]), *catalog.jobs_for(f"{runs[1]},{runs[0]}"), catalog.tune_job("t")]


def test_render_passes_only_declared_parameters(workspace):
    jobs = _render_jobs()
    assert {j.report for j in jobs} == set(catalog.NOTEBOOKS)
    for job in jobs:
        declared = pm.inspect_notebook(str(catalog.notebook_path(job.report)))
        assert set(job.parameters) <= set(declared), (job.report, job.parameters, list(declared))
        for name, value in job.parameters.items():  # same type as the notebook's default
            assert type(value) is type(ast.literal_eval(declared[name]["default"])), (job.report, name, value)


def test_make_passes_only_declared_parameters():
    """``make`` reaches notebooks through ``inferlab report`` (catalog.py's jobs, checked above); any direct
    ``papermill NB OUT -p NAME VALUE`` in the Makefile or CI must name declared parameters."""
    calls = re.findall(r"papermill\s+(\S+\.ipynb)\s+\S+((?:\s+-p\s+\S+\s+\S+)*)",
                       "\n".join(f.read_text() for f in [ROOT / "Makefile", *sorted((ROOT / ".ci").glob("*"))]))
    for notebook, opts in calls:
        declared = pm.inspect_notebook(str(ROOT / notebook))
        assert set(re.findall(r"-p\s+(\S+)", opts)) <= set(declared), (notebook, opts)
    assert "inferlab report" in (ROOT / "Makefile").read_text()


def test_reports_never_run_load():
    """render (``inferlab report``, ``make report``) executes report notebooks only; none has a
    dry_run switch, and the sweep notebooks are not among them."""
    assert not set(catalog.NOTEBOOKS.values()) & set(SWEEP_NOTEBOOKS)
    for name in catalog.NOTEBOOKS.values():
        assert "dry_run" not in pm.inspect_notebook(str(NB_DIR / f"{name}.ipynb"))


def test_sweep_notebooks_default_to_a_dry_run():
    for name in SWEEP_NOTEBOOKS:
        declared = pm.inspect_notebook(str(NB_DIR / f"{name}.ipynb"))
        assert declared["dry_run"]["default"] == "True", name
        assert {"spec", "target", "base_url", "label", "set_fields", "in_cluster"} <= set(declared), name
    deploy = pm.inspect_notebook(str(NB_DIR / "00-deploy.ipynb"))
    assert {k: v["default"] for k, v in deploy.items()} == {"overlay": '"minikube-gpu"', "dry_run": "True",
                                                            "timeout_s": "900"}


def _executions_of_sweep_notebooks() -> list[tuple[Path, str]]:
    """(file, call source) of every ``execute_notebook(...)`` / ``papermill ...`` in the repo that
    names a sweep notebook."""
    found = []
    for f in [*sorted((ROOT / "src").rglob("*.py")), *sorted((ROOT / "tests").rglob("*.py")),
              *sorted((ROOT / "scripts").glob("*"))]:
        if f.suffix != ".py" or f == Path(__file__):
            continue
        text = f.read_text()
        for node in ast.walk(ast.parse(text)):
            name = getattr(node.func, "attr", getattr(node.func, "id", "")) if isinstance(node, ast.Call) else ""
            if name == "execute_notebook":
                call = ast.get_source_segment(text, node) or ""
                if any(n in call for n in SWEEP_NOTEBOOKS):
                    found.append((f, call))
    for f in [ROOT / "Makefile", *sorted((ROOT / ".ci").glob("*"))]:
        for line in f.read_text().splitlines():
            if "papermill" in line and any(n in line for n in SWEEP_NOTEBOOKS):
                found.append((f, line))
    return found


def test_whoever_runs_load_through_a_sweep_notebook_says_so():
    """A sweep notebook runs load only with dry_run=False, so every caller that means to run load
    passes it explicitly (papermill: ``parameters={..., "dry_run": False}`` or ``-p dry_run False``)."""
    calls = _executions_of_sweep_notebooks()
    assert calls, "the engine test executes 10-matrix-sweep; the scan should see it"
    for f, call in calls:
        assert re.search(r"""["']dry_run["']\s*:\s*(False|True)|-p\s+dry_run\s+(False|True)""", call), (f, call)


def test_sweep_notebooks_run_all_is_a_dry_run(workspace, tmp_path):
    """"Run All" with the committed defaults: the plan is printed, nothing is run or recorded."""
    for name in SWEEP_NOTEBOOKS:
        out = tmp_path / f"{name}.ipynb"
        pm.execute_notebook(str(NB_DIR / f"{name}.ipynb"), str(out), kernel_name="python3", cwd=str(NB_DIR),
                            progress_bar=False)
        text = out.read_text()
        assert "est." in text and "min on this machine's CPU engine" in text, name  # describe_plan's output
        assert "dry run: nothing executed" in text, name
    assert not any((workspace / "data" / "runs").iterdir())


def _jupyterlab_edit(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """What a user does in JupyterLab: reword a markdown cell, add a call cell and a markdown cell,
    run it (Lab stores language_info and per-cell UI metadata), clear outputs, save."""
    md = next(c for c in nb.cells if c.cell_type == "markdown")
    md.source += "\n\nEdited in JupyterLab: this line must survive."
    call = nbformat.v4.new_code_cell("%matplotlib inline\nimport inferlab\ninferlab.list_runs()")
    call.metadata["jupyter"] = {"source_hidden": False}
    nb.cells += [nbformat.v4.new_markdown_cell("## A note\nAdded by a user."), call]
    nb.cells[1].metadata["editable"] = True
    nb.metadata["language_info"] = {"name": "python", "version": "3.12.3", "mimetype": "text/x-python",
                                    "file_extension": ".py", "pygments_lexer": "ipython3"}
    return nb


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_notebook_saved_in_jupyterlab_stays_as_edited_and_thin(path, tmp_path):
    before = _digest()
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    nbformat.write(_jupyterlab_edit(_read(copy)), copy)  # the same writer (nbformat) JupyterLab saves with
    saved = _read(copy)
    assert saved.cells[0].source.endswith("Edited in JupyterLab: this line must survive.")
    assert saved.cells[-1].source.endswith("inferlab.list_runs()")
    assert thinness_problems(saved) == []
    assert commit_problems(saved) == []
    assert _digest() == before  # nothing rewrote the committed notebooks meanwhile


def test_the_checks_catch_logic_in_a_saved_notebook(tmp_path):
    """The thinness and commit checks are not vacuous: the edits they exist for are reported."""
    nb = _read(NB_DIR / "21-stress-report.ipynb")
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source += "\nwindow_ms = window_s * 1000"
    nb.cells += [nbformat.v4.new_code_cell("ramps = [c for c in run.manifest.cells]\nramps[0] if ramps else None"),
                 nbformat.v4.new_code_cell("def helper(x):\n    return x"),
                 nbformat.v4.new_code_cell("window_s = 5.0")]
    out = nbformat.v4.new_code_cell("run", execution_count=3)
    out.outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "Run(...)"}, execution_count=3)]
    nb.cells.append(out)
    nbformat.write(nb, tmp_path / "bad.ipynb")
    saved = _read(tmp_path / "bad.ipynb")
    problems = "\n".join(thinness_problems(saved) + commit_problems(saved))
    for expected in ("window_ms = window_s * 1000", "comprehension", "conditional expression", "def",
                     "reassigns parameter `window_s`", "outputs or execution count committed"):
        assert expected in problems, expected


def test_nothing_generates_or_overwrites_notebooks(workspace, monkeypatch):
    """No generator: no script, make target or CI step writes notebooks/; rendering writes its
    executed copy under reports/ and leaves the sources byte for byte."""
    assert not (ROOT / "scripts" / "make_notebooks.py").exists()
    writer = re.compile(r"\b(nbformat|nbf)\.(write|writes)\b|jupytext|make_notebooks")
    sources = [ROOT / "Makefile", ROOT / "pyproject.toml", *sorted((ROOT / ".ci").glob("*")),
               *sorted((ROOT / "scripts").glob("*")), *sorted((ROOT / "src").rglob("*.py"))]
    hits = [f"{f.relative_to(ROOT)}: {m.group(0)}" for f in sources if f.is_file()
            for m in writer.finditer(f.read_text(errors="ignore"))]
    assert not hits, hits

    before = _digest()
    executed = []

    def fake_execute(input_path, output_path, **kwargs):  # the notebook as papermill would copy it
        executed.append(Path(output_path))
        shutil.copy(input_path, output_path)

    monkeypatch.setattr(render.pm, "execute_notebook", fake_execute)
    job = next(j for j in catalog.jobs_for("sample") if j.report == "stress")
    made = render.render(job, pdf=False)
    assert executed and all(NB_DIR not in p.parents for p in [*executed, *made])
    assert all(workspace / "reports" in p.parents for p in made)
    assert _digest() == before
