"""The layer `make layer` builds (build/layer: run `make layer` first): bytecode of Lambda's Python beside
every source, as Lambda's read-only /opt lets no cold start write its own, and within Lambda's size limit."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.infra.conftest import ROOT

LAYER = ROOT / "build" / "layer"
# importlib.util.MAGIC_NUMBER of each runtime's Python: bytecode of any other version is compiled again
MAGIC = {"python3.14": bytes.fromhex("2b0e0d0a")}
UNCHECKED_HASH = 0b01  # PEP 552 flags: hash-based, its source never checked (the layer never changes)
UNZIPPED_LIMIT = 250 * 1024 * 1024  # Lambda's limit for a function's code and its layers, unzipped


def _runtime(resources: dict) -> str:
    runtimes = {
        r["Properties"]["Runtime"] for r in resources.values() if r["Type"] == "AWS::Lambda::Function"
    }
    assert len(runtimes) == 1, f"one layer serves functions of {sorted(runtimes)}"
    return runtimes.pop()


def _cache_tag(runtime: str) -> str:
    return "cpython-" + runtime.removeprefix("python").replace(".", "")  # python3.14 -> cpython-314


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


@pytest.fixture(scope="module")
def sources() -> list[Path]:
    if not (LAYER / "python" / "postpay").is_dir():
        pytest.fail(f"{LAYER} is missing: run `make layer`")
    return sorted((LAYER / "python").rglob("*.py"))


def test_every_source_has_bytecode_lambdas_python_loads_without_compiling(sources, resources):
    # Given the functions' runtime (one layer serves them all)
    runtime = _runtime(resources)
    tag = _cache_tag(runtime)
    assert runtime in MAGIC, f"no magic number known for {runtime}: add importlib.util.MAGIC_NUMBER of it"
    # When each source of the layer is looked for in its __pycache__, as that Python's import does
    missing, stale = [], []
    for source in sources:
        pyc = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
        if not pyc.is_file():
            missing.append(str(source.relative_to(LAYER)))
            continue
        with pyc.open("rb") as f:
            header = f.read(8)
        if header[:4] != MAGIC[runtime] or int.from_bytes(header[4:8], "little") != UNCHECKED_HASH:
            stale.append(f"{pyc.relative_to(LAYER)}: {header.hex()}")
    # Then every one has bytecode of that version, loaded without reading its source
    assert sources, "the layer holds no Python"
    assert not missing, f"{len(missing)} of {len(sources)} compiled at every cold start, e.g. {missing[:5]}"
    assert not stale, f"{len(stale)} pycs of another version or checked against their source: {stale[:5]}"


def test_the_layer_holds_no_bytecode_of_another_python(sources, resources):
    # Given the bytecode the layer holds
    tag = _cache_tag(_runtime(resources))
    # Then all of it is the runtime's (this machine's own was cleaned out, not shipped)
    others = sorted(str(p.relative_to(LAYER)) for p in LAYER.rglob("*.pyc") if f".{tag}." not in p.name)
    assert not others, f"{len(others)} pycs Lambda never loads, e.g. {others[:5]}"


def test_the_products_bytecode_names_its_path_on_lambda(sources, resources):
    # Given the product's own modules' bytecode
    tag = _cache_tag(_runtime(resources))
    product = [s for s in sources if s.relative_to(LAYER).parts[:2] == ("python", "postpay")]
    assert product, "the layer holds no postpay"
    # Then each names its source where Lambda has it, as tracebacks then show (not this build's folder)
    wrong = []
    for source in product:
        pyc = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
        code = pyc.read_bytes() if pyc.is_file() else b""
        on_lambda = f"/opt/{source.relative_to(LAYER).as_posix()}".encode()
        if on_lambda not in code or str(LAYER).encode() in code:
            wrong.append(str(source.relative_to(LAYER)))
    assert not wrong, f"{len(wrong)} product modules do not name /opt/python/postpay/...: {wrong[:5]}"


# Lambda's Python (Pyodide's CPython, as infra/bytecode.mjs runs it) imports from a copy of the layer at /opt
_IMPORT_FROM_OPT = """
import { loadPyodide } from "pyodide";
const py = await loadPyodide();
py.FS.mkdirTree("/opt/python");
py.FS.mount(py.FS.filesystems.NODEFS, { root: process.argv[1] }, "/opt/python");
try {
  console.log(py.runPython(`
import json, sys
sys.path.insert(0, "/opt/python")
sys.dont_write_bytecode = True
import jinja2, postpay.money
json.dumps({"cache_tag": sys.implementation.cache_tag, "jinja2": jinja2.__spec__.cached,
    "product": postpay.money.__spec__.cached, "file": postpay.money.round_money.__code__.co_filename})
`));
} catch (error) {
  console.error(error.message);  // the Python traceback
  process.exit(1);
}
"""


def test_lambdas_python_imports_the_layer_from_its_bytecode_never_its_sources(tmp_path, sources, resources):
    # Given the product and a dependency from the layer, every source replaced by one that fails if compiled
    opt = tmp_path / "python"
    for package in ("postpay", "jinja2", "markupsafe"):
        shutil.copytree(LAYER / "python" / package, opt / package)
    for source in opt.rglob("*.py"):
        source.write_text('raise RuntimeError("compiled from source: no usable bytecode")\n')
    # When Lambda's Python imports them from /opt
    done = subprocess.run(
        ["node", "--input-type=module", "-e", _IMPORT_FROM_OPT, str(opt)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Then it loaded their bytecode as it is, and the product's code names its file on Lambda
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    tag = loaded["cache_tag"]
    assert tag == _cache_tag(_runtime(resources)), "Pyodide is not the functions' Python"
    assert loaded["jinja2"] == f"/opt/python/jinja2/__pycache__/__init__.{tag}.pyc"
    assert loaded["product"] == f"/opt/python/postpay/__pycache__/money.{tag}.pyc"
    assert loaded["file"] == "/opt/python/postpay/money.py"


def test_the_deployed_layer_asset_carries_the_bytecode(synthesized, resources):
    # Given the layer's asset as `cdk deploy` zips it
    _, _, outdir = synthesized
    [layer] = [r for r in resources.values() if r["Type"] == "AWS::Lambda::LayerVersion"]
    asset = outdir / f"asset.{layer['Properties']['Content']['S3Key'].removesuffix('.zip')}"
    tag = _cache_tag(_runtime(resources))
    # Then the bytecode is in it, as built (the asset excludes no __pycache__)
    built = LAYER / "python" / "postpay" / "__pycache__" / f"money.{tag}.pyc"
    shipped = asset / built.relative_to(LAYER)
    assert shipped.is_file(), f"the layer asset {asset.name} ships no bytecode"
    assert shipped.read_bytes() == built.read_bytes()


def test_the_layer_and_any_functions_code_fit_lambdas_unzipped_limit(sources):
    # Given the layer with its bytecode and the largest function's own code
    layer = _size(LAYER)
    largest = max(_size(folder) for folder in (ROOT / "functions").iterdir() if folder.is_dir())
    # Then together they are under Lambda's 250 MB unzipped
    assert layer + largest < UNZIPPED_LIMIT, f"layer {layer / 2**20:.0f} MB + code {largest / 2**10:.0f} KB"
