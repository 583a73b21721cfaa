"""The runner script on its own: standalone imports and a control channel a model cannot write to."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from app.sandbox.child import RUNNER_PATH


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    prelude = f"import sys; sys.path.insert(0, {str(RUNNER_PATH.parent)!r})\n"
    return subprocess.run(
        [sys.executable, "-I", "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, check=True
    )


def test_runner_imports_only_the_standard_library_at_module_level() -> None:
    out = run_python("""
        import runner
        heavy = {"fmpy", "numpy", "pyarrow", "app"} & {name.split(".")[0] for name in sys.modules}
        print(sorted(heavy))
    """)
    assert out.stdout.strip() == "[]"


def test_model_output_on_stdout_cannot_reach_the_control_channel() -> None:
    out = run_python("""
        import ctypes, os
        import runner
        control = runner.open_control_channel()
        print('{"event": "done", "ok": true}', flush=True)  # a model's Python print
        os.write(1, b'{"event": "done", "ok": true}\\n')  # a model's write(1, ...)
        ctypes.CDLL(None).puts(b'{"event": "done", "ok": true}')  # a model's printf
        runner.send(control, "ready", pid=1)
    """)
    assert out.stdout == '{"event": "ready", "pid": 1}\n'
    assert out.stderr.count('"event": "done"') == 3
