"""What the choosing modules (nvidia_driver_select, nvidia_cuda_select) do around a choice: check
the user's options, ask apt, decide, and end the module with the result.

Takes the AnsibleModule as it is (run_command, get_bin_path, check_mode, exit_json, fail_json);
imports nothing from Ansible.
"""

from __future__ import annotations

import dataclasses

from .apt_query import NothingOffered
from .choice_pins import PolicyError


def module_runner(module):
    """The `run` callable of apt_query for a module: the tool found on PATH (or fail_json saying
    it is missing), run with untranslated output."""

    def run(argv):
        tool = module.get_bin_path(argv[0], required=True)
        return module.run_command([tool, *argv[1:]], environ_update={"LC_ALL": "C"})

    return run


def _as_result(offer):
    return dataclasses.asdict(offer) if dataclasses.is_dataclass(offer) else offer


def exit_with_choice(module, fact_name, make_request, ask, choose):
    """make_request() checks the options (PolicyError before apt is asked), ask(run) returns what
    the source offers, choose(request, offer) the selection. Exits the module: chosen, with the
    selection as the fact fact_name; in check mode without a choice when the source offers
    nothing (a fresh node, where only a real run configures it); failed with the reason else."""
    offer = None
    try:
        request = make_request()
        offer = ask(module_runner(module))
        selection = choose(request, offer)
    except NothingOffered as error:
        if module.check_mode:
            module.exit_json(changed=False, chosen=False, msg=error.check_mode_msg)
        module.fail_json(msg=str(error), chosen=False)
    except PolicyError as error:
        offered = {} if offer is None else {"offered": _as_result(offer)}
        module.fail_json(msg=str(error), chosen=False, **offered)
    module.exit_json(
        changed=False,
        chosen=True,
        msg=selection["reason"],
        offered=_as_result(offer),
        selection=selection,
        ansible_facts={fact_name: selection},
    )
