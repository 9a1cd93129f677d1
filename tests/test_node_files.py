"""node_files as Ansible runs it (run_module of conftest.py: its own process, arguments from a
file, JSON on stdout), checked against the real files it leaves under tmp_path: content, mode,
link targets, and inode and mtime where nothing may change. Runs as root (owner tests).

Decisions the tests pin: mode is a quoted string of 3 to 5 octal digits up to '07777' ("644",
"0644", "02775"); numbers, "0o644", "999", "abc" and "17777" are refused. Content is written
byte for byte as UTF-8 (no newline added or removed).
"""

import os
import stat
import tempfile

import pytest
from conftest import run_module
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CHECK_SCRIPT = "#!/bin/sh\nexec grep -q '^ok' \"$1\"\n"
STAT_FIELDS = ("st_mode", "st_uid", "st_gid", "st_ino", "st_mtime_ns")


def run(tmp_path, files, check_mode=False, diff=False):
    return run_module(tmp_path, "node_files", {"files": files}, check_mode=check_mode, diff=diff)


def a_file(path, content, mode="0644", **options):
    return dict(path=str(path), content=content, mode=mode, **options)


def headers(path):
    return {"before_header": str(path), "after_header": str(path)}


def tree(root):
    """Everything under root: kind, mode, content or target, owner, inode and mtime."""
    found = {}
    for directory, names, files in os.walk(root):
        for name in names + files:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                data = os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                with open(path, "rb") as handle:
                    data = handle.read()
            else:
                data = None
            found[os.path.relpath(path, root)] = (data, *(getattr(info, f) for f in STAT_FIELDS))
    return found


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "root"
    path.mkdir()
    return path


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_creates_directories_files_and_links_then_a_rerun_changes_nothing(tmp_path, root):
    files = [
        {"path": str(root / "etc/gpu/conf.d"), "state": "directory", "mode": "0750"},
        a_file(root / "etc/gpu/conf.d/a.conf", "a = 1\n", "0640"),
        a_file(root / "etc/gpu/b.txt", "no newline", "4750", owner="root", group="0"),
        a_file(root / "etc/gpu/unicode", "Grüße ☃ 日本\n", "644"),
        {"path": str(root / "etc/gpu/current"), "state": "link", "src": "conf.d/a.conf"},
    ]
    result = run(tmp_path, files)
    assert result["changed"] and not result.get("failed"), result
    parents = [str(root / "etc"), str(root / "etc/gpu")]
    assert result["changed_paths"] == parents + [entry["path"] for entry in files]
    new_file = ["state", "content", "mode"]
    assert [entry["changes"] for entry in result["files"]] == [
        ["state", "mode", "parents"], new_file, [*new_file, "owner", "group"], new_file,
        ["state", "src"]]  # fmt: skip
    assert mode_of(root / "etc") == mode_of(root / "etc/gpu") == 0o755
    assert mode_of(root / "etc/gpu/conf.d") == 0o750
    assert (root / "etc/gpu/conf.d/a.conf").read_bytes() == b"a = 1\n"
    assert mode_of(root / "etc/gpu/conf.d/a.conf") == 0o640
    assert (root / "etc/gpu/b.txt").read_bytes() == b"no newline"
    assert mode_of(root / "etc/gpu/b.txt") == 0o4750  # set after the chown that clears it
    assert (root / "etc/gpu/unicode").read_bytes() == "Grüße ☃ 日本\n".encode()
    assert os.readlink(root / "etc/gpu/current") == "conf.d/a.conf"
    before = tree(root)
    written = {os.path.relpath(path, root) for path in parents + [e["path"] for e in files]}
    assert set(before) == written  # no temporary file left behind
    again = run(tmp_path, files, diff=True)
    assert again["changed"] is False and again["changed_paths"] == [] and again["diff"] == []
    assert all(entry["changes"] == [] for entry in again["files"])
    assert tree(root) == before  # inode and mtime included


def test_mode_only_change_keeps_the_file(tmp_path, root):
    path = root / "f"
    path.write_text("same\n")
    path.chmod(0o600)
    inode, mtime = os.stat(path).st_ino, os.stat(path).st_mtime_ns
    result = run(tmp_path, [a_file(path, "same\n")], diff=True)
    assert result["files"][0]["changes"] == ["mode"]
    assert result["diff"] == [dict(headers(path), before={"mode": "0600"}, after={"mode": "0644"})]
    assert mode_of(path) == 0o644 and path.read_text() == "same\n"
    assert (os.stat(path).st_ino, os.stat(path).st_mtime_ns) == (inode, mtime)


def test_content_change_shows_the_text_and_keeps_owner(tmp_path, root):
    path = root / "f.conf"
    path.write_text("old line\n")
    path.chmod(0o640)
    os.chown(path, 65534, 65534)
    result = run(tmp_path, [a_file(path, "new line\n", "0640")], diff=True)
    assert result["changed"] and result["files"][0]["changes"] == ["content"]
    assert result["diff"] == [dict(headers(path), before="old line\n", after="new line\n")]
    assert path.read_text() == "new line\n" and mode_of(path) == 0o640
    assert (os.stat(path).st_uid, os.stat(path).st_gid) == (65534, 65534)


def test_owner_and_group_are_enforced(tmp_path, root):
    path = root / "owned"
    path.write_text("x")
    path.chmod(0o644)
    os.chown(path, 65534, 65534)
    result = run(tmp_path, [a_file(path, "x", owner="root", group="root")], diff=True)
    assert result["files"][0]["changes"] == ["owner", "group"]
    assert result["diff"][0]["after"] == {"owner": "root", "group": "root"}
    assert (os.stat(path).st_uid, os.stat(path).st_gid) == (0, 0)


def test_check_mode_writes_nothing_and_reports_what_the_real_run_changes(tmp_path, root):
    (root / "mode").write_text("m")
    (root / "mode").chmod(0o600)
    (root / "content").write_text("before\n")
    (root / "content").chmod(0o644)
    (root / "gone").mkdir()
    (root / "gone" / "inside").write_text("x")
    os.symlink("old-target", root / "link")
    files = [
        {"path": str(root / "new/dir"), "state": "directory", "mode": "0755"},
        a_file(root / "new/dir/file", "created\n"),
        a_file(root / "mode", "m"),
        a_file(root / "content", "after\n"),
        {"path": str(root / "link"), "state": "link", "src": "new-target"},
        {"path": str(root / "gone"), "state": "absent"},
        {"path": str(root / "never-there"), "state": "absent"},
    ]
    before = tree(root)
    check = run(tmp_path, files, check_mode=True, diff=True)
    assert tree(root) == before
    real = run(tmp_path, files, diff=True)
    assert check["changed"] and real["changed"]
    changed = [str(root / "new"), str(root / "new/dir"), *(e["path"] for e in files[1:6])]
    assert check["changed_paths"] == real["changed_paths"] == changed
    assert check["files"] == real["files"] and check["diff"] == real["diff"]
    changes = [entry["changes"] for entry in real["files"]]
    assert changes[2:] == [["mode"], ["content"], ["src"], ["state"], []]
    assert {"before": "", "after": "created\n"}.items() <= real["diff"][2].items()
    assert real["diff"][-1]["before"] == {"state": "directory"}
    assert not (root / "gone").exists() and os.readlink(root / "link") == "new-target"
    assert (root / "new/dir/file").read_text() == "created\n"


def test_validate_failure_leaves_the_old_file_and_reports_what_changed_before(tmp_path, root):
    path = root / "checked"
    path.write_text("ok original\n")
    path.chmod(0o644)
    kept = os.stat(path)
    files = [
        a_file(root / "first", "1\n"),
        a_file(path, "bad\n", validate="grep -q ok %s"),
        a_file(root / "never", "2\n"),
    ]
    result = run(tmp_path, files)
    assert result["failed"] and str(path) in result["msg"] and "grep -q ok" in result["msg"]
    assert "exited 1" in result["msg"]
    assert result["changed"] is True and result["changed_paths"] == [str(root / "first")]
    assert path.read_text() == "ok original\n" and os.stat(path).st_ino == kept.st_ino
    assert sorted(os.listdir(root)) == ["checked", "first"]  # no temporary file, no "never"


def test_later_entry_is_validated_by_a_script_an_earlier_entry_installed(tmp_path, root):
    script = root / "bin/check-ok"
    files = [
        {"path": str(root / "bin"), "state": "directory", "mode": "0755"},
        a_file(script, CHECK_SCRIPT, "0755"),
        a_file(root / "conf", "ok then\n", validate="%s %%s" % script),
    ]
    assert run(tmp_path, files, check_mode=True)["changed"]  # validate not run in check mode
    assert not script.exists()
    result = run(tmp_path, files)
    assert result["changed"] and not result.get("failed"), result
    assert (root / "conf").read_text() == "ok then\n"
    files[2]["content"] = "not ok\n"
    refused = run(tmp_path, files)
    assert refused["failed"] and str(root / "conf") in refused["msg"]
    assert (root / "conf").read_text() == "ok then\n"


def test_missing_validate_command_is_a_failure_naming_the_path(tmp_path, root):
    path = root / "conf"
    result = run(tmp_path, [a_file(path, "x", validate="/no/such/cmd %s")])
    assert result["failed"] and str(path) in result["msg"] and "/no/such/cmd" in result["msg"]
    assert os.listdir(root) == []


def test_link_is_retargeted_and_owner_set_on_the_link_itself(tmp_path, root):
    (root / "target").write_text("t")
    os.symlink("elsewhere", root / "link")
    entry = {"path": str(root / "link"), "state": "link", "src": "target", "owner": "root"}
    result = run(tmp_path, [entry], diff=True)
    assert result["files"][0]["changes"] == ["src"]
    assert result["diff"][0]["before"] == {"src": "elsewhere"}
    assert os.readlink(root / "link") == "target" and (root / "target").read_text() == "t"
    assert sorted(os.listdir(root)) == ["link", "target"]


@pytest.mark.parametrize(
    "existing, entry, what",
    [
        ("file", {"state": "link", "src": "x"}, "a file"),
        ("directory", {"state": "link", "src": "x"}, "a directory"),
        ("directory", {"content": "x", "mode": "0644"}, "a directory"),
        ("link", {"content": "x", "mode": "0644"}, "a symbolic link to somewhere"),
        ("file", {"state": "directory", "mode": "0755"}, "a file"),
    ],
)
def test_what_is_there_is_not_replaced(tmp_path, root, existing, entry, what):
    path = root / "there"
    if existing == "file":
        path.write_text("keep me\n")
    elif existing == "directory":
        (path / "sub").mkdir(parents=True)
    else:
        os.symlink("somewhere", path)
    before = tree(root)
    for check_mode in (True, False):
        result = run(tmp_path, [{"path": str(path), **entry}], check_mode=check_mode)
        assert result["failed"] and result["changed"] is False
        assert "(%s) is %s;" % (path, what) in result["msg"]
        assert tree(root) == before


def test_file_needs_its_directory_but_check_mode_takes_it_as_made_by_an_earlier_task(
    tmp_path, root
):
    # Check mode on a fresh node: the package that brings the directory is not installed yet.
    path = root / "missing/file"
    result = run(tmp_path, [a_file(path, "")], True)
    assert not result.get("failed") and result["changed_paths"] == [str(path)]
    result = run(tmp_path, [a_file(path, "")], False)
    assert result["failed"] and str(root / "missing") in result["msg"]
    assert "no earlier entry creates it" in result["msg"]
    assert os.listdir(root) == []


def test_absent_removes_files_links_and_trees_and_ignores_missing_paths(tmp_path, root):
    (root / "file").write_text("x")
    (root / "tree/deep").mkdir(parents=True)
    (root / "tree/deep/f").write_text("x")
    (root / "kept").mkdir()
    os.symlink("kept", root / "link")
    files = [
        {"path": str(root / name), "state": "absent"}
        for name in ("file", "tree", "link", "missing")
    ]
    result = run(tmp_path, files)
    assert result["changed_paths"] == [str(root / n) for n in ("file", "tree", "link")]
    assert os.listdir(root) == ["kept"]  # the link went, not its target
    assert run(tmp_path, files)["changed"] is False


def test_exclusive_removes_what_matches_and_is_not_listed_in_the_same_call(tmp_path, root):
    for unit in ("kept.service", "gone.service", "other.service"):
        (root / (unit + ".d")).mkdir()
    (root / "kept.service.d/gate.conf").write_text("old\n")
    (root / "gone.service.d/gate.conf").write_text("old\n")
    (root / "other.service.d/own.conf").write_text("not ours\n")  # does not match
    wanted = [
        {"path": str(root / "new.service.d"), "state": "directory", "mode": "0755"},
        a_file(root / "new.service.d/gate.conf", "new\n"),
        a_file(root / "kept.service.d/gate.conf", "new\n"),
    ]
    args = {"files": wanted, "exclusive": [str(root / "*.d/gate.conf")]}
    planned = run_module(tmp_path, "node_files", args, check_mode=True, diff=True)
    result = run_module(tmp_path, "node_files", args)
    gone = str(root / "gone.service.d/gate.conf")
    assert planned["changed_paths"] == result["changed_paths"]
    assert result["changed_paths"] == [
        str(root / "new.service.d"),
        str(root / "new.service.d/gate.conf"),
        str(root / "kept.service.d/gate.conf"),
        gone,
    ]
    assert result["files"][-1] == {
        "path": gone,
        "state": "absent",
        "changed": True,
        "changes": ["state"],
    }
    assert {
        "before_header": gone,
        "after_header": gone,
        "before": {"state": "file"},
        "after": {"state": "absent"},
    } in planned["diff"]
    assert sorted(str(path.relative_to(root)) for path in root.rglob("*.conf")) == [
        "kept.service.d/gate.conf",
        "new.service.d/gate.conf",
        "other.service.d/own.conf",
    ]
    assert (root / "gone.service.d").is_dir()  # only the file matched
    assert run_module(tmp_path, "node_files", args)["changed"] is False


@pytest.mark.parametrize(
    "exclusive, expected",
    [
        (["relative/*.conf"], "exclusive: 'relative/*.conf' is not an absolute path pattern"),
        ([5], "exclusive: 5 is not an absolute path pattern"),
        ("/etc/*.conf", "exclusive must be a list of absolute path patterns, got '/etc/*.conf'"),
    ],
)
def test_bad_exclusive_pattern_is_refused_and_nothing_changes(tmp_path, root, exclusive, expected):
    (root / "a.conf").write_text("x")
    args = {"files": [a_file(root / "b.conf", "y")], "exclusive": exclusive}
    result = run_module(tmp_path, "node_files", args)
    assert result["failed"] and expected in result["msg"], result
    assert "Traceback" not in result["msg"]
    assert sorted(os.listdir(root)) == ["a.conf"]


def test_later_entries_see_what_earlier_ones_removed_and_recreated(tmp_path, root):
    (root / "old/stale").mkdir(parents=True)
    files = [
        {"path": str(root / "old"), "state": "absent"},
        {"path": str(root / "old/new"), "state": "directory", "mode": "0700"},
        a_file(root / "old/new/f", "binary\0content"),
    ]
    check = run(tmp_path, files, check_mode=True, diff=True)
    assert (root / "old/stale").is_dir()
    real = run(tmp_path, files, diff=True)
    assert check["files"] == real["files"] and check["diff"] == real["diff"]
    assert [entry["changes"] for entry in real["files"]] == [
        ["state"], ["state", "mode", "parents"], ["state", "content", "mode"]]  # fmt: skip
    assert "binary" in real["diff"][-1]["prepared"] and "after" not in real["diff"][-1]
    assert os.listdir(root / "old") == ["new"] and mode_of(root / "old/new") == 0o700
    files = [files[1], files[0], a_file(root / "old/new/g", "")]  # g's directory is gone by then
    refused = run(tmp_path, files, check_mode=True)
    assert (
        refused["failed"] and "parent %s is not a directory" % (root / "old/new") in refused["msg"]
    )
    assert run(tmp_path, files)["msg"] == refused["msg"] and (root / "old/new/f").exists()


BAD_INPUT = [
    ({"path": "etc/x", "content": "", "mode": "0644"}, ["'etc/x'", "not absolute"]),
    ({"content": "", "mode": "0644"}, ["files[1]", "path is required"]),
    ({"path": "/P", "mode": "0644"}, ["/P", "content is required for state=file"]),
    ({"path": "/P", "content": ""}, ["/P", "mode is required for state=file"]),
    (
        {"path": "/P", "state": "link", "src": "t", "content": "c"},
        ["/P", "content 'c' is not allowed for state=link", "allowed: src, owner, group"],
    ),
    (
        {"path": "/P", "state": "link", "src": "t", "mode": "0644"},
        ["mode '0644' is not allowed for state=link"],
    ),
    ({"path": "/P", "state": "absent", "owner": "root"}, ["owner 'root' is not allowed"]),
    (
        {"path": "/P", "state": "directory", "mode": "0755", "validate": "true %s"},
        ["validate 'true %s' is not allowed for state=directory"],
    ),
    (
        {"path": "/P", "state": "dir", "mode": "0755"},
        ["/P", "state 'dir' is not one of file, directory, link, absent"],
    ),
    ({"path": "/P", "content": "", "mode": "0644", "conten": "x"}, ["/P", "unknown option conten"]),
    ({"path": "/P", "content": "", "mode": "999"}, ["/P", "mode '999' is not", "'07777'"]),
    ({"path": "/P", "content": "", "mode": "abc"}, ["mode 'abc' is not"]),
    ({"path": "/P", "content": "", "mode": "0o644"}, ["mode '0o644' is not"]),
    ({"path": "/P", "content": "", "mode": "17777"}, ["mode '17777' is not"]),
    ({"path": "/P", "content": "", "mode": 420}, ["mode 420 is not", "unquoted"]),
    ({"path": "/P", "content": 5, "mode": "0644"}, ["/P", "content must be a string, got 5"]),
    (
        {"path": "/P", "content": "", "mode": "0644", "owner": "no-such-user-x"},
        ["/P", "owner 'no-such-user-x' is not known"],
    ),
    (
        {"path": "/P", "content": "", "mode": "0644", "group": "no-such-group-x"},
        ["group 'no-such-group-x' is not known"],
    ),
    (
        {"path": "/P", "content": "", "mode": "0644", "validate": "grep -q ok"},
        ["/P", "validate 'grep -q ok' has no %s"],
    ),
    ("just a string", ["files[1] must be a dict"]),
]


@pytest.mark.parametrize("bad, expected", BAD_INPUT)
def test_bad_input_names_entry_and_value_and_changes_nothing(tmp_path, root, bad, expected):
    good = a_file(root / "good", "would be written\n")
    if isinstance(bad, dict) and bad.get("path") == "/P":
        bad = dict(bad, path=str(root / "P"))
        expected = [text.replace("/P", str(root / "P")) for text in expected]
    for check_mode in (True, False):
        result = run(tmp_path, [good, bad], check_mode=check_mode)
        assert result["failed"] and result["changed"] is False, result
        assert "Traceback" not in result["msg"]
        for text in expected:
            assert text in result["msg"], (text, result["msg"])
        assert os.listdir(root) == []


def test_duplicate_paths_are_refused(tmp_path, root):
    entry = a_file(root / "a", "")
    twice = dict(entry, path=str(root) + "//a/")  # the same path once normalised
    result = run(tmp_path, [entry, twice])
    assert result["failed"] and "files[1] (%s): listed twice" % (root / "a") in result["msg"]
    assert "(also files[0])" in result["msg"]
    assert os.listdir(root) == []


NAMES = st.text(alphabet="abcxyz0189._-éü日", max_size=12).map(lambda name: "f" + name)
CONTENTS = st.text(max_size=200)  # any Unicode text but lone surrogates
MODES = st.integers(min_value=0, max_value=0o7777)  # root reads and writes whatever the mode


@settings(
    derandomize=True,
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    files=st.dictionaries(NAMES, st.tuples(CONTENTS, MODES), min_size=1, max_size=6),
    directory_mode=MODES,
)
def test_generated_files_are_written_exactly_and_reapplying_changes_nothing(
    tmp_path, files, directory_mode
):
    top = tempfile.mkdtemp(dir=tmp_path)
    request = [
        {"path": os.path.join(top, "d"), "state": "directory", "mode": "%04o" % directory_mode}
    ]
    request += [
        {"path": os.path.join(top, "d", name), "content": content, "mode": "%03o" % mode}
        for name, (content, mode) in files.items()
    ]
    result = run(tmp_path, request)
    assert result["changed"] and not result.get("failed"), result
    assert mode_of(os.path.join(top, "d")) == directory_mode
    assert sorted(os.listdir(os.path.join(top, "d"))) == sorted(files)
    for name, (content, mode) in files.items():
        with open(os.path.join(top, "d", name), "rb") as written:
            assert written.read() == content.encode("utf-8")
        assert mode_of(os.path.join(top, "d", name)) == mode
    before = tree(top)
    again = run(tmp_path, request)
    assert again["changed"] is False and again["changed_paths"] == []
    assert tree(top) == before
