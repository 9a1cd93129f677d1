"""The one rule for the format of nvidia_driver_branch, nvidia_driver_kernel_modules, cuda_version
and cuda_defaults: good values pass, bad ones are refused naming the variable, the value and what
is allowed, and no value whatever ends in anything but that refusal (a generated test)."""

import importlib.util
import random
import re
import string
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "module_utils"))

from nvidia_gpu import choice_pins
from nvidia_gpu.choice_pins import PolicyError
from nvidia_gpu.cuda_choice import CudaRequest
from nvidia_gpu.driver_choice import DriverRequest

PROJECT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("make", "option", "attribute", "value", "pinned"),
    [
        *[(DriverRequest, "branch", "branch_pin", value, pinned)
          for value, pinned in [("auto", None), (None, None), ("580", 580), (470, 470),
                                ("535", 535), ("999", 999)]],
        *[(DriverRequest, "kernel_modules", "flavour_pin", value, value)
          for value in ["open", "proprietary"]],
        *[(DriverRequest, "kernel_modules", "flavour_pin", "auto", None)],
        *[(CudaRequest, "version", "pin", value, pinned)
          for value, pinned in [("auto", None), ("12.8", "12.8"), (12.8, "12.8"),
                                (13.0, "13.0"), ("11.8", "11.8"), ("12.10", "12.10"),
                                ("12.08", "12.8")]],
    ],
)  # fmt: skip
def test_good_values(make, option, attribute, value, pinned):
    assert getattr(make(**{option: value}), attribute) == pinned


BRANCH_REFUSAL = (
    "nvidia_driver_branch '%s' is not a branch number; allowed: auto or a driver branch number "
    "such as 580"
)
FLAVOUR_REFUSAL = (
    "nvidia_driver_kernel_modules '%s' is not a kernel module flavour; allowed: auto, open, "
    "proprietary"
)
CUDA_REFUSAL = (
    "cuda_version '%s' is not a CUDA version; allowed: auto or a CUDA version MAJOR.MINOR such as "
    "12.8"
)


@pytest.mark.parametrize(
    ("make", "option", "value", "refusal"),
    [
        *[(DriverRequest, "branch", value, BRANCH_REFUSAL)
          for value in ["latest", "", " 580", "580 ", "58", "5800", "058", "580.95", "580.95.05",
                        "R580", "-580", "AUTO", "Auto", "true", True, 580.0, "५८०", "580\n"]],
        *[(DriverRequest, "kernel_modules", value, FLAVOUR_REFUSAL)
          for value in ["both", "", "Open", "nvidia", False]],
        *[(CudaRequest, "version", value, CUDA_REFUSAL)
          for value in ["12", 12, "12.", ".8", "12.8.1", "v12.8", "cuda-12.8", "12-8", "twelve",
                        "", " 12.8", "012.8", "12.123", "latest", "AUTO", True]],
    ],
)  # fmt: skip
def test_bad_values_name_the_variable_the_value_and_what_is_allowed(make, option, value, refusal):
    with pytest.raises(PolicyError) as error:
        make(**{option: value})
    assert str(error.value) == refusal % value


@pytest.mark.parametrize(
    ("defaults", "message"),
    [
        ({"12": "twelve"}, "cuda_defaults['12'] 'twelve' is not a CUDA version; allowed: a CUDA "
                           "version MAJOR.MINOR such as 12.8"),
        ({"12": "13.0"}, "cuda_defaults['12'] is '13.0', a CUDA 13 release; allowed: a 12.MINOR "
                         "version such as 12.0"),
        ({}, "cuda_defaults is empty; allowed: {major: version} such as {'12': '12.8'}"),
    ],
)  # fmt: skip
def test_bad_cuda_defaults(defaults, message):
    with pytest.raises(PolicyError) as refusal:
        CudaRequest(defaults=defaults)
    assert str(refusal.value) == message


def test_flavours_allowed_are_the_module_choices():
    # The module's choices, written for ansible-doc, against the rule.
    import ansible.module_utils

    ansible.module_utils.__path__.append(str(PROJECT / "module_utils"))
    path = PROJECT / "library" / "nvidia_driver_select.py"
    spec = importlib.util.spec_from_file_location("nvidia_driver_select", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    choices = module.argument_spec()["kernel_modules"]["choices"]
    assert sorted(choices) == sorted([choice_pins.AUTO, *choice_pins.FLAVOURS])


# ---- generated values (hypothesis is not in the venv: a seeded generator instead) ----

ALPHABET = string.digits * 3 + ".-_ x\nRr" + "autoAUTO"
BRANCH_SPEC = re.compile(r"[1-9][0-9]{2}")
CUDA_SPEC = re.compile(r"([1-9][0-9]?)\.([0-9]{1,2})")


def generated(seed, count=3000):
    """Short strings, mostly digits and dots, with some of every kind of value the inventory
    can hold (int, float, bool, None, list)."""
    rng = random.Random(seed)
    values = ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 7))) for _ in range(count)]
    values += [rng.randint(-10, 2000) for _ in range(200)]
    values += [round(rng.uniform(0, 20), rng.randint(0, 3)) for _ in range(200)]
    return [*values, True, False, None, ["580"], {"branch": 580}]


def as_branch(match):
    return int(match.group(0))


def as_cuda_version(match):
    return "%d.%d" % (int(match.group(1)), int(match.group(2)))


# the rule, the variable it names, the format as a separate spec, what a match becomes
RULES = [
    pytest.param(
        choice_pins.branch_pin, "nvidia_driver_branch", BRANCH_SPEC, as_branch, id="branch"
    ),
    pytest.param(choice_pins.cuda_pin, "cuda_version", CUDA_SPEC, as_cuda_version, id="cuda"),
]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("rule", "variable", "spec", "convert"), RULES)
def test_any_value_is_accepted_by_the_spec_or_refused_by_name(rule, variable, spec, convert, seed):
    for value in generated(seed):
        text = "" if value is None else str(value)
        try:
            pinned = rule(value)
        except PolicyError as refusal:
            assert not spec.fullmatch(text) and text != "auto", value
            assert str(refusal).startswith("%s '%s' " % (variable, text))
            continue
        if value is None or text == "auto":
            assert pinned is None
        else:
            match = spec.fullmatch(text)
            assert match and pinned == convert(match), value
