#!/usr/bin/python
# Copyright: the gpu-node project contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: many files, directories and links of a node ensured in one module run."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: node_files
short_description: Files, directories, links and absent paths ensured together in one call
description:
  - Ensures many paths in one module run instead of a M(ansible.builtin.copy) or
    M(ansible.builtin.file) task each, so a role's files cost one run where nothing changes.
  - All entries are checked before anything changes (options, absolute and distinct paths, modes,
    owners, groups, parents, what is at each path); bad input fails naming the entry and value.
  - A path that matches is not touched. New content goes to a temporary file in the same directory,
    gets its mode and owner, is validated, then renamed over the path. An entry that fails then
    fails the module, naming it, with the paths changed before it in RV(changed_paths).
version_added: "1.0.0"
author: gpu-node project contributors (@gpu-node)
options:
  files:
    description:
      - Paths applied in this order, each listed once. Later entries see the earlier ones, also in
        check mode (a file may follow its directory, or validate with a command installed before).
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path (C(~) and environment variables are expanded).
        type: path
        required: true
      state:
        description:
          - C(file) and C(link) (replaced when its target differs) need their parent directory;
            in check mode a missing one is taken as made by an earlier task (a package), and the
            entry is reported as created.
            C(directory) is created with missing parents (mode C(0755)) like C(mkdir -p).
          - A directory or link where C(file) is wanted, or anything else where C(directory) or
            C(link) is, is an error. C(absent) removes a file, link or directory tree.
        type: str
        choices: [file, directory, link, absent]
        default: file
      content:
        description: Content of a C(file) (required there), written as UTF-8 exactly as given.
        type: str
      src:
        description: Target of a C(link) (required there), as given (relative to its directory).
        type: str
      mode:
        description:
          - Quoted string of 3 to 5 octal digits up to C(07777) like C("0644"); numbers (YAML
            reads 0644 unquoted as 420), symbolic modes and C(0o644) are refused.
          - Required for C(file) and C(directory), not allowed for C(link) and C(absent).
        type: raw
      owner:
        description: User name or numeric uid, enforced when given; without it a new path gets
          the module's user, an existing one keeps its owner. Not for C(absent).
        type: str
      group:
        description: Group name or numeric gid, as O(files[].owner).
        type: str
      validate:
        description: For C(file). Command run (without a shell) when the content changes, C(%s)
          replaced by the temporary file's path (ending in the file's name); a non-zero exit
          leaves the file as it was. Not run in check mode, as in M(ansible.builtin.copy).
        type: str
  exclusive:
    description:
      - Absolute shell patterns (C(*), C(?), C([...]); C(*) skips names that start with a dot) of
        paths this call owns. A path that matches one and is not an entry of O(files) is removed
        after the entries, as an C(absent) entry would be, and listed in RV(files) like one.
      - For what a role writes under names that vary (a drop-in per unit it is given), so that
        the ones an earlier run wrote and no longer wanted go in the same call, with no search.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    description: Checks everything and reports exactly what would change; writes nothing.
    support: full
  diff_mode:
    description: State, mode, owner, group, target and content (not binary or large) changes.
    support: full
"""

EXAMPLES = r"""
- name: The role's files in one call
  node_files:
    files:
      - {path: /etc/gpu-node, state: directory, mode: "0755"}
      - path: /etc/gpu-node/tuning.json
        content: "{{ lookup('ansible.builtin.template', 'tuning.json.j2') }}"
        mode: "0644"
        owner: root
        validate: /usr/local/bin/gpu-tuning check %s
      - {path: /usr/local/bin/gpu-health, state: link, src: ../lib/gpu-node/health.py}
      - {path: /etc/gpu-node/old.conf, state: absent}
  register: gpu_node_files

- name: One drop-in per unit listed; those of units no longer listed are removed
  node_files:
    files:
      - {path: /etc/systemd/system/slurmd.service.d, state: directory, mode: "0755"}
      - {path: /etc/systemd/system/slurmd.service.d/gate.conf, content: "...", mode: "0644"}
    exclusive: [/etc/systemd/system/*.d/gate.conf]
"""

RETURN = r"""
changed_paths:
  description: Paths changed (in check mode, to change) in order, a directory's new parents
    first. On failure, those changed before the failing entry.
  returned: always
  type: list
  elements: str
  sample: [/etc/gpu-node, /etc/gpu-node/tuning.json]
files:
  description: One per entry applied, in order, with C(path), C(state), C(changed) and
    C(changes), what changed of C(state) (created or removed), C(content), C(src), C(mode),
    C(owner), C(group) and C(parents) (created). A new path lists C(state) and all it sets.
  returned: always
  type: list
  elements: dict
  sample: [{"path": /etc/a.conf, "state": file, "changed": true, "changes": [content, mode]}]
"""

import glob
import grp
import os
import pwd
import re
import shlex
import shutil
import stat
import tempfile

from ansible.module_utils import basic
from ansible.module_utils.basic import AnsibleModule

TYPES = {"path": "path", "state": "str", "content": "str", "src": "str", "mode": "raw"}
TYPES.update(owner="str", group="str", validate="str")
# Options each state requires, and those it allows, besides path and state.
REQUIRED = {"file": ("content", "mode"), "directory": ("mode",), "link": ("src",), "absent": ()}
ALLOWED = {"file": ("content", "mode", "owner", "group", "validate"), "absent": ()}
ALLOWED.update(directory=("mode", "owner", "group"), link=("src", "owner", "group"))
MODE = re.compile(r"[0-7]{3,5}\Z")
MODE_RULE = "a quoted string of 3 to 5 octal digits up to '07777', such as '0644'"
DIFF_MAX_SIZE = 104448  # ansible-core's default max_diff_size
KINDS = {stat.S_IFREG: "file", stat.S_IFDIR: "directory", stat.S_IFLNK: "link"}
# Each compared property: option, field of record(), and the lookups of owner and group.
FIELDS = (("src", "target"), ("mode", "mode"), ("owner", "uid"), ("group", "gid"))
IDS = {"owner": (pwd.getpwnam, pwd.getpwuid), "group": (grp.getgrnam, grp.getgrgid)}


class Failed(Exception):
    """An entry that cannot be applied; the message names it."""


def check_entry(index, raw, errors):
    """The entry normalised, or None after appending what is wrong with it to errors."""
    if not isinstance(raw, dict):
        errors.append("files[%d] must be a dict with path and state, got %r" % (index, raw))
        return None
    given = {key: value for key, value in raw.items() if value is not None}
    path, state, where = given.get("path"), given.get("state", "file"), "files[%d]" % index
    valid = isinstance(state, str) and state in REQUIRED
    problems = [] if valid else ["state %r is not one of %s" % (state, ", ".join(REQUIRED))]
    for key, value in sorted(given.items()):
        if key not in TYPES:
            problems.append("unknown option %s (allowed: %s)" % (key, ", ".join(TYPES)))
        elif key != "mode" and not isinstance(value, str):
            problems.append("%s must be a string, got %r" % (key, value))
        elif valid and key not in ALLOWED[state] + ("path", "state"):
            allowed = "allowed: %s" % (", ".join(ALLOWED[state]) or "only path and state")
            problems.append("%s %r is not allowed for state=%s (%s)" % (key, value, state, allowed))
    for key in REQUIRED[state] if valid else ():
        if key not in given:
            problems.append("%s is required for state=%s" % (key, state))
    if isinstance(path, str):
        path = os.path.normpath(os.path.expanduser(os.path.expandvars(path)))
        where = "%s (%s)" % (where, path)
        if not os.path.isabs(path):
            problems.append("path %r is not absolute (an absolute path is required)" % path)
    elif path is None:
        problems.append("path is required")
    problems += ["%s has a NUL character" % k for k in ("path", "src") if "\0" in str(given.get(k))]
    entry = {"path": path, "state": state, "where": where, "mode": None, "src": given.get("src")}
    mode = given.get("mode")
    if isinstance(mode, str) and MODE.match(mode) and int(mode, 8) <= 0o7777:
        entry["mode"] = int(mode, 8)
    elif mode is not None:
        number = " (YAML reads 0644 unquoted as the number 420)" if type(mode) is int else ""
        problems.append("mode %r is not %s%s" % (mode, MODE_RULE, number))
    for key, (by_name, _) in IDS.items():
        name, entry[key] = given.get(key), None
        try:
            if isinstance(name, str):
                entry[key] = int(name) if name.isascii() and name.isdigit() else by_name(name)[2]
        except KeyError:
            problems.append("%s %r is not known on this node (a name or numeric id)" % (key, name))
    entry["validate"] = validate = given.get("validate")
    if isinstance(validate, str) and "%s" not in validate:
        problems.append("validate %r has no %%s (where the temporary file's path goes)" % validate)
    try:
        entry["content"] = str(given.get("content", "")).encode("utf-8")
    except UnicodeEncodeError:
        problems.append("content is not valid Unicode text")
    errors.extend("%s: %s" % (where, problem) for problem in problems)
    return None if problems else entry


def check_input(files):
    """(entries, errors): every entry checked, and every path listed once."""
    if not isinstance(files, list):
        return [], ["files must be a list of dicts, got %r" % (files,)]
    errors, entries, seen = [], [], {}
    for index, raw in enumerate(files):
        entry = check_entry(index, raw, errors)
        first = seen.setdefault(entry["path"], index) if entry else index
        if first != index:
            errors.append("%s: listed twice (also files[%d])" % (entry["where"], first))
        elif entry:
            entries.append(entry)
    return entries, errors


def swept(patterns, entries, errors):
    """absent entries for the paths that match patterns (exclusive) and no entry lists."""
    if not isinstance(patterns, list):
        errors.append("exclusive must be a list of absolute path patterns, got %r" % (patterns,))
        return []
    listed, found = {entry["path"] for entry in entries}, []
    for pattern in patterns:
        if not isinstance(pattern, str) or not os.path.isabs(pattern) or "\0" in pattern:
            errors.append("exclusive: %r is not an absolute path pattern" % (pattern,))
            continue
        matches = sorted(glob.glob(os.path.normpath(pattern)))
        found += [path for path in matches if path not in listed and path not in found]
    swept_entries = []
    for path in found:
        entry = check_entry(
            len(entries) + len(swept_entries), {"path": path, "state": "absent"}, errors
        )
        if entry:
            entry["where"] = "exclusive (%s)" % path
            swept_entries.append(entry)
    return swept_entries


def record(kind, fresh, mode=None, uid=None, gid=None, target=None, size=0):
    """What is at a path: read by snapshot(), or left by an entry (fresh: created by this call)."""
    return dict(kind=kind, fresh=fresh, mode=mode, uid=uid, gid=gid, target=target, size=size)


def snapshot(path):
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    kind = KINDS.get(stat.S_IFMT(st.st_mode), "special file")
    target = os.readlink(path) if kind == "link" else None
    return record(kind, False, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, target, st.st_size)


def current(path, overlay):
    """What is at path once the entries before have been applied (overlay: what they left)."""
    if path in overlay:
        return overlay[path]
    ancestor = os.path.dirname(path)
    while ancestor not in overlay and ancestor != os.path.dirname(ancestor):
        ancestor = os.path.dirname(ancestor)
    above = overlay.get(ancestor, {"kind": "directory"})
    if above is None or above["kind"] == "file" or above.get("fresh"):
        return None  # removed, or created by this call with only what the entries put there
    return snapshot(path)


def removed_earlier(path, overlay):
    """Whether an earlier entry removes path or a directory above it."""
    while path != os.path.dirname(path):
        if path in overlay and overlay[path] is None:
            return True
        path = os.path.dirname(path)
    return False


def describe(found, keys):
    """Those keys of what is at a path, as ansible.builtin.file shows them in a diff."""
    found = found or record("absent", False)
    shown = {"state": found["kind"], "src": found["target"]}
    shown["mode"] = None if found["mode"] is None else "%04o" % found["mode"]
    for key, field in FIELDS[2:]:
        try:
            shown[key] = IDS[key][1](found[field])[0]
        except (KeyError, TypeError):
            shown[key] = found[field]
    return {key: shown[key] for key in keys if shown[key] is not None}


def text_diff(headers, before, after):
    """Content diff; skipped for binary or large content, as Ansible skips it."""
    diff = dict(headers)
    for key, data in (("before", before), ("after", after)):
        if data is None or len(data) > DIFF_MAX_SIZE or b"\0" in data:
            note = "diff skipped: %s content is binary or over %d bytes\n" % (key, DIFF_MAX_SIZE)
            return dict(headers, prepared=note)
        diff[key] = data.decode("utf-8", "replace")
    return diff


def plan(entry, overlay, want_diff, check_mode=False):
    """(changes, parents to create, before, diffs) of one entry; records its result in overlay."""
    path, state = entry["path"], entry["state"]
    before, parents, changes = current(path, overlay), [], []
    kind = before and before["kind"]
    if state == "absent":
        for below in [key for key in overlay if key.startswith(path.rstrip("/") + "/")]:
            del overlay[below]  # what earlier entries made under path goes with it
        changes, overlay[path] = ["state"] if before else [], None
    elif kind not in (None, state):
        what = "a symbolic link to %s" % before["target"] if kind == "link" else "a " + kind
        message = "%s is %s; state=%s does not replace it (remove it with state=absent first)"
        raise Failed(message % (entry["where"], what, state))
    else:
        parent = os.path.dirname(path)
        while state == "directory" and current(parent, overlay) is None:
            parents.insert(0, parent)
            parent = os.path.dirname(parent)
        above = current(parent, overlay)
        # Check mode on a fresh node: the package that brings the directory is not installed yet.
        if not above and check_mode and not removed_earlier(parent, overlay):
            above = overlay[parent] = record("directory", True, 0o755, os.geteuid(), os.getegid())
        if not above or not (above["kind"] == "directory" or os.path.isdir(parent)):
            why = "" if above else " (it does not exist and no earlier entry creates it)"
            raise Failed("%s: parent %s is not a directory%s" % (entry["where"], parent, why))
        for parent in parents:
            overlay[parent] = record("directory", True, 0o755, os.geteuid(), os.getegid())
        managed = ["content"] * (state == "file") + [k for k, _ in FIELDS if entry[k] is not None]
        old = before or record(None, True, uid=os.geteuid(), gid=os.getegid())
        after = record(state, before is None, entry["mode"], entry["owner"], entry["group"])
        after.update({key: old[key] for key in ("mode", "uid", "gid") if after[key] is None})
        after["target"] = entry["src"]
        changes = ["state", *managed]
        if before:
            changes = [k for k, field in FIELDS if k in managed and before[field] != after[field]]
        if before and state == "file":
            same_size = before["size"] == len(entry["content"])
            if same_size or (want_diff and before["size"] <= DIFF_MAX_SIZE):
                with open(path, "rb") as existing:
                    entry["before_content"] = existing.read()
            if not same_size or entry["before_content"] != entry["content"]:
                changes.insert(0, "content")
        overlay[path] = after
    if not (want_diff and changes):
        return changes, parents, before, []
    headers = {"before_header": path, "after_header": path}
    keys = [key for key in changes if key != "content"]
    diffs = [dict(headers, before=describe(before, keys), after=describe(overlay[path], keys))]
    diffs = diffs if keys else []
    if "content" in changes:
        old_content = entry.get("before_content", None if before else b"")  # None: too large
        diffs.append(text_diff(headers, old_content, entry["content"]))
    return changes, parents, before, diffs


def write_file(module, entry, before):
    """The content written to a temporary file in its directory, validated, renamed over path."""
    path, name = entry["path"], "." + os.path.basename(entry["path"])
    fd, temp = tempfile.mkstemp(prefix=".", suffix=name, dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as new:
            old = before or {}
            ids = (old.get(f, -1) if entry[k] is None else entry[k] for k, f in FIELDS[2:])
            os.fchown(new.fileno(), *ids)
            os.fchmod(new.fileno(), entry["mode"])  # after chown, which clears set-id bits
            new.write(entry["content"])
            new.flush()
            os.fsync(new.fileno())
        if entry["validate"]:
            command = entry["validate"].replace("%s", shlex.quote(temp))
            rc, out, err = module.run_command(command, handle_exceptions=False)
            if rc != 0:
                output = (err or out).strip() or "no output"
                message = "%s: validate %r exited %d, file unchanged: %s"
                raise Failed(message % (entry["where"], command, rc, output))
        if module.selinux_enabled():
            module.set_context_if_different(temp, module.selinux_default_context(path), False)
        os.replace(temp, path)
    finally:
        if os.path.lexists(temp):
            os.unlink(temp)


def apply(module, entry, changes, parents, before, done):
    """Make the planned changes of one entry; done gets each path changed, in order."""
    path, state, owner, group = entry["path"], entry["state"], entry["owner"], entry["group"]
    for parent in parents:
        os.mkdir(parent, 0o755)
        os.chmod(parent, 0o755)
        done.append(parent)
    if state == "absent" and before["kind"] == "directory":
        shutil.rmtree(path)
    elif state == "absent":
        os.unlink(path)
    elif state == "file" and "content" in changes:
        write_file(module, entry, before)
    elif state == "directory" and before is None:
        os.mkdir(path, entry["mode"])
    elif state == "link" and "src" in changes:
        directory, name = os.path.split(path)
        temp = os.path.join(directory, ".%s.%s" % (os.urandom(6).hex(), name))
        os.symlink(entry["src"], temp)
        os.replace(temp, path)
    if "content" not in changes and {"owner", "group"} & set(changes):
        chown = os.lchown if state == "link" else os.chown
        chown(path, -1 if owner is None else owner, -1 if group is None else group)
    if "content" not in changes and entry["mode"] is not None:
        os.chmod(path, entry["mode"])  # also after a chown, which clears set-id bits
    done.append(path)


def summary(changed_paths, results):
    return {"changed": bool(changed_paths), "changed_paths": changed_paths, "files": results}


def main():
    # Own checks first, for messages that name the entry (validate-modules passes no arguments).
    given, entries = basic._load_params() or {}, []
    if "files" in given:
        entries, errors = check_input(given["files"])
        if not errors:
            entries += swept(given.get("exclusive") or [], entries, errors)
        if errors:
            raw = {"files": {"type": "raw"}, "exclusive": {"type": "raw"}}
            bare = AnsibleModule(argument_spec=raw, supports_check_mode=True)
            bare.fail_json(msg="; ".join(errors), **summary([], []))
    options = {key: {"type": kind} for key, kind in TYPES.items()}
    options["path"]["required"] = True
    options["state"].update(choices=list(REQUIRED), default="file")
    files = {"type": "list", "elements": "dict", "required": True, "options": options}
    exclusive = {"type": "list", "elements": "str", "default": []}
    spec = {"files": files, "exclusive": exclusive}
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    overlay, planned, diffs, changed_paths, results = {}, [], [], [], []

    def fail(entry, error):
        where = "" if isinstance(error, Failed) else entry["where"] + ": "
        module.fail_json(msg=where + str(error), **summary(changed_paths, results))

    for entry in entries:  # everything planned (and checked) before anything changes
        try:
            changes, parents, before, entry_diffs = plan(
                entry, overlay, module._diff, module.check_mode
            )
        except (Failed, OSError, ValueError) as error:
            fail(entry, error)
        planned.append((entry, changes, parents, before))
        diffs.extend(entry_diffs)
    for entry, changes, parents, before in planned:
        try:
            if changes and module.check_mode:
                changed_paths.extend([*parents, entry["path"]])
            elif changes:
                apply(module, entry, changes, parents, before, changed_paths)
        except (Failed, OSError, ValueError) as error:
            fail(entry, error)
        changes = changes + ["parents"] * bool(parents)
        results.append(
            dict(path=entry["path"], state=entry["state"], changed=bool(changes), changes=changes)
        )
    result = summary(changed_paths, results)
    module.exit_json(**dict(result, diff=diffs) if module._diff else result)


if __name__ == "__main__":
    main()
