"""The GPU settings options are written once, in module_utils/nvidia_gpu/settings_options.py.

The module builds its argument_spec from that table; what cannot be built from it is checked
against it here: the nvidia_gpu_settings module's DOCUMENTATION (a literal string, which
ansible-doc and validate-modules read without running the module), the gpu_tuning role's argument
specs (the custom profile, gpu_tuning_gpus, the override variables) and the role's one call of
the module. Names, types, elements, choices, defaults, required and suboptions must all agree.
"""

import ast
import copy
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "module_utils"))

from nvidia_gpu import settings_options  # noqa: E402
from nvidia_gpu.nvml import COMPUTE_MODE_NAME_BY_NUMBER  # noqa: E402

MODULE = ROOT / "library" / "nvidia_gpu_settings.py"
ROLE = ROOT / "roles" / "gpu_tuning"
ATTRIBUTES = ("type", "elements", "choices", "default", "required")


def documentation():
    """The module's DOCUMENTATION, read as ansible-doc reads it: from the source, not run."""
    for node in ast.parse(MODULE.read_text()).body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["DOCUMENTATION"]:
            return yaml.safe_load(node.value.value)
    raise AssertionError("%s has no DOCUMENTATION" % MODULE)


def role_options():
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    return specs["argument_specs"]["main"]["options"]


def shape(options, children):
    """{name: {type, elements, choices, default, required, suboptions}} of an option list.

    children names the key of the suboptions: `options` in an argument spec, `suboptions` in
    DOCUMENTATION. What is not given takes Ansible's default (type str, not required).
    """
    return {
        name: {
            "type": option.get("type", "str"),
            "elements": option.get("elements"),
            "choices": list(option["choices"]) if "choices" in option else None,
            "default": option.get("default"),
            "required": option.get("required", False),
            "suboptions": shape(option[children], children) if children in option else None,
        }
        for name, option in options.items()
    }


def differences(given, table, where=""):
    """Where an option list disagrees with the table's, one line per difference."""
    found = []
    for name in sorted(set(given) | set(table)):
        path = where + name
        if name not in table:
            found.append("%s: not in settings_options" % path)
        elif name not in given:
            found.append("%s: in settings_options, missing here" % path)
        else:
            mine, theirs = given[name], table[name]
            found.extend(
                "%s.%s: %r here, %r in settings_options" % (path, key, mine[key], theirs[key])
                for key in ATTRIBUTES
                if mine[key] != theirs[key]
            )
            if (mine["suboptions"] is None) != (theirs["suboptions"] is None):
                found.append("%s: suboptions here and in settings_options differ" % path)
            elif mine["suboptions"]:
                found.extend(differences(mine["suboptions"], theirs["suboptions"], path + "."))
    return found


TABLE = shape(settings_options.argument_spec(), "options")
# What the role takes elsewhere than in gpu_tuning_custom: gpu_tuning_gpus, the override variables.
NOT_IN_CUSTOM = ("gpus", "overrides")


def test_the_module_documents_exactly_the_table():
    assert differences(shape(documentation()["options"], "suboptions"), TABLE) == []


def test_the_custom_profile_takes_the_table_options():
    custom = shape(role_options()["gpu_tuning_custom"]["options"], "options")
    expected = {name: value for name, value in TABLE.items() if name not in NOT_IN_CUSTOM}
    assert differences(custom, expected) == []


@pytest.mark.parametrize("variable", ["gpu_tuning_model_overrides", "gpu_tuning_overrides"])
def test_the_role_overrides_take_the_table_override_options(variable):
    overrides = shape(role_options()[variable]["options"], "options")
    assert differences(overrides, TABLE["overrides"]["suboptions"]) == []


def test_the_role_selects_gpus_as_the_module_does():
    gpus = shape({"gpus": role_options()["gpu_tuning_gpus"]}, "options")["gpus"]
    assert {key: gpus[key] for key in ATTRIBUTES} == {key: TABLE["gpus"][key] for key in ATTRIBUTES}


def test_the_role_calls_the_module_with_every_option_by_its_own_name():
    (task,) = yaml.safe_load((ROLE / "tasks" / "settings.yml").read_text())
    args = task["nvidia_gpu_settings"]
    assert list(args) == list(settings_options.OPTIONS)
    assert [value.split("'")[1] for value in args.values()] == list(args)


def test_a_difference_is_reported():
    """The comparison above can fail: each kind of disagreement is found and named."""
    changed = copy.deepcopy(documentation()["options"])
    changed["clocks"]["suboptions"]["strategy"]["default"] = "locked"
    changed["compute_mode"]["choices"].append("exclusive_thread")
    del changed["overrides"]["suboptions"]["clocks"]["suboptions"]
    changed["snap_clocks"]["type"] = "str"
    changed["power"] = {"type": "int"}
    assert differences(shape(changed, "suboptions"), TABLE) == [
        "clocks.strategy.default: 'locked' here, 'auto' in settings_options",
        "compute_mode.choices: ['default', 'exclusive_process', 'prohibited', 'exclusive_thread']"
        " here, ['default', 'exclusive_process', 'prohibited'] in settings_options",
        "overrides.clocks: suboptions here and in settings_options differ",
        "power: not in settings_options",
        "snap_clocks.type: 'str' here, 'bool' in settings_options",
    ]


def test_settable_compute_modes_are_nvmls_but_the_deprecated_one():
    assert set(settings_options.COMPUTE_MODE_CHOICES) == set(
        COMPUTE_MODE_NAME_BY_NUMBER.values()
    ) - {"exclusive_thread"}
