"""nvml_runtime's wheel of the nvidia_gpu package: reproducible bytes, a version that follows the
sources, a RECORD pip accepts, and a pip install that replaces an older version and its files.
The node-side state probe (files/runtime_state.py) is run against the same virtualenv."""

import csv
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
ROLE = PROJECT / "roles" / "nvml_runtime"
PACKAGE = ROLE / "files" / "nvidia_gpu"
BIN = Path(sys.executable).parent

spec = importlib.util.spec_from_file_location(
    "project_wheel", PROJECT / "lookup_plugins" / "project_wheel.py"
)
builder = importlib.util.module_from_spec(spec)
spec.loader.exec_module(builder)


def project_sources():
    return {path.name: path.read_bytes() for path in PACKAGE.glob("*.py")}


def copy_of_package(tmp_path):
    copy = tmp_path / "src" / "nvidia_gpu"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_package_dir_is_the_projects_module_utils():
    assert PACKAGE.resolve() == PROJECT / "module_utils" / "nvidia_gpu"


def test_same_sources_give_the_same_bytes(tmp_path):
    first = builder.build(PACKAGE, tmp_path / "a")
    # Other timestamps and permissions on the source files leave no trace in the wheel.
    copy = copy_of_package(tmp_path)
    for path in copy.iterdir():
        os.utime(path, (1_000_000_000, 1_000_000_000))
        path.chmod(0o600)
    second = builder.build(copy, tmp_path / "b")
    assert first["filename"] == second["filename"]
    assert Path(first["path"]).read_bytes() == Path(second["path"]).read_bytes()
    with zipfile.ZipFile(first["path"]) as wheel:
        entries = wheel.infolist()
    assert {entry.date_time for entry in entries} == {(1980, 1, 1, 0, 0, 0)}
    assert {entry.external_attr >> 16 for entry in entries} == {0o100644}


def test_version_changes_with_any_source_file(tmp_path):
    version = builder.build(PACKAGE, tmp_path / "out")["version"]
    assert version.startswith("1.0.0+g") and len(version) == len("1.0.0+g") + 12
    copy = copy_of_package(tmp_path)
    (copy / "xid.py").write_bytes((copy / "xid.py").read_bytes() + b"# changed\n")
    edited = builder.build(copy, tmp_path / "out")
    (copy / "extra.py").write_text("")
    added = builder.build(copy, tmp_path / "out")
    assert len({version, edited["version"], added["version"]}) == 3
    assert edited["filename"] == "gpu_node_nvidia_gpu-%s-py3-none-any.whl" % edited["version"]


def test_wheel_holds_exactly_the_package_and_a_correct_record(tmp_path):
    built = builder.build(PACKAGE, tmp_path)
    info = "gpu_node_nvidia_gpu-%s.dist-info" % built["version"]
    with zipfile.ZipFile(built["path"]) as wheel:
        names = wheel.namelist()
        contents = {name: wheel.read(name) for name in names}
    assert names[-3:] == [info + "/METADATA", info + "/WHEEL", info + "/RECORD"]
    assert {name: contents[name] for name in names[:-3]} == {
        "nvidia_gpu/" + name: content for name, content in project_sources().items()
    }
    assert "Version: %s\n" % built["version"] in contents[info + "/METADATA"].decode()
    assert "Tag: py3-none-any\n" in contents[info + "/WHEEL"].decode()
    rows = list(csv.reader(io.StringIO(contents[info + "/RECORD"].decode())))
    assert [row[0] for row in rows] == names
    assert rows[-1] == [info + "/RECORD", "", ""]
    for name, digest, size in rows[:-1]:
        assert digest == builder.record_hash(contents[name]), name
        assert int(size) == len(contents[name]), name


def test_cache_keeps_an_identical_wheel_untouched(tmp_path):
    path = Path(builder.build(PACKAGE, tmp_path / "new" / "cache")["path"])
    os.utime(path, (1_000_000_000, 1_000_000_000))
    builder.build(PACKAGE, tmp_path / "new" / "cache")
    assert path.stat().st_mtime == 1_000_000_000
    path.write_bytes(b"truncated")
    builder.build(PACKAGE, tmp_path / "new" / "cache")
    assert path.read_bytes() == builder.wheel_bytes(
        builder.package_files(PACKAGE), builder.version_of(builder.package_files(PACKAGE))
    )
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_a_directory_without_python_files_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"has no \*\.py files"):
        builder.build(tmp_path, tmp_path / "out")


def run(*argv, **kwargs):
    proc = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def runtime_state(venv, *args):
    """files/runtime_state.py as the role runs it: -I -c <source> with the virtualenv's python."""
    source = (ROLE / "files" / "runtime_state.py").read_text()
    return json.loads(run(str(venv / "bin" / "python"), "-I", "-c", source, *args))


@pytest.fixture
def venv(tmp_path):
    path = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", str(path))
    return path


def pip_install(venv, wheel, *flags):
    return run(
        str(BIN / "pip"), "--python", str(venv / "bin" / "python"), "install", "--no-index",
        "--no-deps", "--disable-pip-version-check", *flags, wheel,
    )  # fmt: skip


def test_pip_replaces_an_older_version_and_its_files(tmp_path, venv):
    older = copy_of_package(tmp_path)
    (older / "old_module.py").write_text("GONE = False\n")
    (older / "xid.py").write_text("# an older xid.py\n")
    old = builder.build(older, tmp_path / "old", base_version="0.9.0")
    new = builder.build(PACKAGE, tmp_path / "new")
    pip_install(venv, old["path"])
    assert "Successfully installed" in pip_install(venv, new["path"])

    python = str(venv / "bin" / "python")
    probe = "import importlib.metadata as m, nvidia_gpu; print(nvidia_gpu.__file__, m.version(%r))"
    module_file, version = run(python, "-I", "-c", probe % builder.DIST_NAME).split()
    assert version == new["version"]
    installed = Path(module_file).parent
    assert installed.parent.name == "site-packages"
    assert {path.name: path.read_bytes() for path in installed.glob("*.py")} == project_sources()
    # Every module imports from the installed copy (pynvml is optional at import time); the
    # older version's extra module is gone with its files.
    every_module = (
        "import importlib, pkgutil, nvidia_gpu\n"
        "for module in pkgutil.iter_modules(nvidia_gpu.__path__):\n"
        "    importlib.import_module('nvidia_gpu.' + module.name)\n"
    )
    run(python, "-I", "-c", every_module)
    assert not (installed / "old_module.py").exists()


def test_runtime_state_reports_versions_drift_and_leftovers(tmp_path, venv):
    new = builder.build(PACKAGE, tmp_path / "wheels")
    args = ["--dist", "nvidia-ml-py", "--dist", builder.DIST_NAME, "--wheel", new["filename"]]
    args += ["--wheel-dir", str(tmp_path / "wheels"), "--old-path", str(tmp_path / "lib")]
    args += ["--old-site-file", "gpu-node.pth"]
    assert runtime_state(venv, *args) == {
        "installed": {"nvidia-ml-py": None, builder.DIST_NAME: None},
        "modified": {},
        "leftovers": [],
    }

    pip_install(venv, new["path"])
    (tmp_path / "lib").mkdir()
    (tmp_path / "wheels" / "gpu_node_nvidia_gpu-0.1-py3-none-any.whl").write_bytes(b"")
    site_packages = next((venv / "lib").glob("python*/site-packages"))
    (site_packages / "gpu-node.pth").write_text(str(tmp_path / "lib") + "\n")
    (site_packages / "nvidia_gpu" / "xid.py").write_text("# edited on the node\n")
    state = runtime_state(venv, *args)
    assert state["installed"] == {"nvidia-ml-py": None, builder.DIST_NAME: new["version"]}
    assert state["modified"] == {builder.DIST_NAME: ["nvidia_gpu/xid.py"]}
    assert state["leftovers"] == [
        str(tmp_path / "lib"),
        str(site_packages / "gpu-node.pth"),
        str(tmp_path / "wheels" / "gpu_node_nvidia_gpu-0.1-py3-none-any.whl"),
    ]


def test_the_lookup_builds_through_ansible_in_check_mode(tmp_path):
    cache = tmp_path / "fresh" / "cache"
    query = "{{ query('project_wheel', '%s', cache_dir='%s') | first }}" % (PACKAGE, cache)
    out = run(
        str(BIN / "ansible"), "localhost", "--check", "-m", "ansible.builtin.debug",
        "-a", "var=wheel", "-e", json.dumps({"wheel": query}),
        cwd=PROJECT,
        env=dict(
            os.environ,
            ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
            ANSIBLE_LOOKUP_PLUGINS=str(PROJECT / "lookup_plugins"),
            ANSIBLE_STDOUT_CALLBACK="ansible.builtin.oneline",
            ANSIBLE_LOAD_CALLBACK_PLUGINS="true",
            ANSIBLE_LOCALHOST_WARNING="false",
        ),
    )  # fmt: skip
    expected = builder.build(PACKAGE, tmp_path / "expected")
    assert (cache / expected["filename"]).read_bytes() == Path(expected["path"]).read_bytes()
    assert expected["version"] in out
