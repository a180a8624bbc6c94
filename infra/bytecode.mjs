// Compile the Lambda layer's Python to bytecode for Lambda's own Python, so a cold start loads .pyc instead of
// compiling boto3, botocore, Powertools and the rest from source: /opt is read-only on Lambda, so Python cannot
// cache what it compiles there. Usage: node infra/bytecode.mjs <dir> <path on Lambda> <Python minor, e.g. 3.14>
//
// Pyodide (CPython compiled to WebAssembly, from package-lock.json) is the interpreter: it is the only CPython
// of Lambda's version this machine and CI can install, and bytecode is the same on every platform, so what it
// writes is what Lambda's python3.14 on arm64 loads. It must be the runtime's minor version (bytecode changes
// with each one): a mismatch stops the build.
import path from "node:path";
import { loadPyodide } from "pyodide";

const [dir, prefix, expected] = process.argv.slice(2);
if (!dir || !prefix || !/^3\.\d+$/.test(expected ?? "")) {
  console.error("usage: node infra/bytecode.mjs <dir> <path on Lambda> <Python minor version, e.g. 3.14>");
  process.exit(2);
}

// Third-party files that may fail to compile, each with why it is never imported on Lambda. None so far: a file
// that does not compile would fail its import there too, so any other failure (and any in postpay/) stops the build.
const MAY_FAIL = new Map();

const started = performance.now();
const py = await loadPyodide();
py.FS.mkdirTree("/layer");
py.FS.mount(py.FS.filesystems.NODEFS, { root: path.resolve(dir) }, "/layer");
py.globals.set("expected", expected);
py.globals.set("prefix", prefix);
// Unchecked-hash pycs: CDK zips the asset with fixed timestamps, so timestamp-checked ones would never match
// their sources and Python would compile again; the layer never changes, so hashing each source at import is
// wasted work. dfile names each file as Lambda sees it (/opt/python/...), for tracebacks and co_filename.
const result = py
  .runPython(
    `
import os, py_compile, sys, warnings
version = "%d.%d" % sys.version_info[:2]
compiled, failed = 0, {}
if version == expected:
    for folder, dirs, files in os.walk("/layer"):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            source = os.path.join(folder, name)
            relative = os.path.relpath(source, "/layer")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a dependency's invalid escapes are not ours to fix
                    py_compile.compile(source, dfile=prefix + "/" + relative, doraise=True,
                        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
                compiled += 1
            except py_compile.PyCompileError as error:
                failed[relative] = error.msg.strip().splitlines()[-1]
(version, sys.implementation.cache_tag, compiled, failed)
`,
  )
  .toJs({ dict_converter: Object.fromEntries });
const [version, cacheTag, compiled, failed] = result;

if (version !== expected) {
  console.error(
    `bytecode: Pyodide runs Python ${version}, Lambda runs ${expected}: its bytecode would not load there. ` +
      "Pin the pyodide release of Lambda's Python in package.json.",
  );
  process.exit(1);
}
const unexpected = Object.entries(failed).filter(([file]) => file.startsWith("postpay/") || !MAY_FAIL.has(file));
if (unexpected.length > 0) {
  console.error(`bytecode: ${unexpected.length} file(s) of ${dir} do not compile under Python ${version}:`);
  for (const [file, why] of unexpected) console.error(`  ${file}: ${why}`);
  console.error(
    "Lambda would fail to import them too. A third-party file that is never imported goes in MAY_FAIL in " +
      "infra/bytecode.mjs, with why.",
  );
  process.exit(1);
}
const seconds = ((performance.now() - started) / 1000).toFixed(1);
console.log(`bytecode: ${compiled} files of ${dir} compiled for ${cacheTag} as ${prefix}/... in ${seconds} s`);
