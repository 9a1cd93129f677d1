"""How sandbox nodes are reached is written in three places that cannot read each other (the
project's ansible.cfg, molecule's generated one, the sandbox inventory and the node creator's
variables): they must say the same."""

import configparser
import ipaddress
import sys

import yaml
from conftest import PROJECT

SANDBOX_VARS = yaml.safe_load((PROJECT / "sandbox" / "vars.yml").read_text())
NODE_VARS = yaml.safe_load(
    (PROJECT / "inventory" / "sandbox" / "group_vars" / "sandbox_nodes.yml").read_text()
)
MOLECULE = yaml.safe_load((PROJECT / ".config" / "molecule" / "config.yml").read_text())


def test_molecule_connects_as_ansible_cfg_says():
    config = configparser.ConfigParser()
    config.read(PROJECT / "ansible.cfg")
    ours = config["ssh_connection"]
    theirs = MOLECULE["provisioner"]["config_options"]["ssh_connection"]
    assert ours.getboolean("pipelining") is True and theirs["pipelining"] is True
    assert theirs["ssh_args"] == ours["ssh_args"]
    assert "ControlPersist=" in ours["ssh_args"]
    assert MOLECULE["driver"] == {"name": "default", "options": {"managed": True}}


def test_molecule_finds_every_plugin_path_of_ansible_cfg():
    # Molecule writes its own ansible.cfg: without a path there, a role's module or action plugin
    # is missing in the scenarios only (an action's documentation module would run alone).
    config = configparser.ConfigParser()
    config.read(PROJECT / "ansible.cfg")
    env = MOLECULE["provisioner"]["env"]
    for key, value in config["defaults"].items():
        if key == "roles_path" or key.endswith(("_plugins", "library", "module_utils")):
            assert env["ANSIBLE_" + key.upper()] == "${MOLECULE_PROJECT_DIRECTORY}/" + value, key
    # The callbacks ansible.cfg enables (the GPU hardware changes after the recap) too.
    theirs = MOLECULE["provisioner"]["config_options"]["defaults"]["callbacks_enabled"]
    assert theirs == config["defaults"]["callbacks_enabled"]


def test_inventory_and_node_creator_name_the_same_key_and_connection():
    # The creator's path is under the project; the inventory's is two levels above its own dir.
    key_in_project = SANDBOX_VARS["sandbox_ssh_key_file"].replace(
        "{{ sandbox_ssh_dir }}", SANDBOX_VARS["sandbox_ssh_dir"]
    )
    assert key_in_project == "{{ sandbox_project_dir }}/.cache/sandbox-ssh/id_ed25519"
    assert NODE_VARS["ansible_ssh_private_key_file"] == (
        "{{ inventory_dir }}/../../.cache/sandbox-ssh/id_ed25519"
    )
    # SSH unless SANDBOX_CONNECTION says podman: the node creator and molecule read the variable,
    # the Makefile passes it to the inventory's plays as -e sandbox_connection (a plain value).
    assert "'SANDBOX_CONNECTION'" in SANDBOX_VARS["sandbox_connection"]
    assert "default('ssh', true)" in SANDBOX_VARS["sandbox_connection"]
    assert NODE_VARS["sandbox_connection"] == "ssh"
    makefile = (PROJECT / "Makefile").read_text()
    assert "-e sandbox_connection=$(SANDBOX_CONNECTION)" in makefile
    assert "\tansible-playbook -i inventory/sandbox" not in makefile  # all through SANDBOX_PLAYBOOK
    assert NODE_VARS["ansible_user"] == "root"


def test_fixed_addresses_stay_out_of_the_dynamic_range():
    subnet = ipaddress.ip_network(SANDBOX_VARS["sandbox_network_subnet"])
    dynamic = ipaddress.ip_network(SANDBOX_VARS["sandbox_network_dynamic_range"])
    assert subnet.prefixlen == 24  # molecule/shared/create.yml counts in the last number
    assert dynamic.subnet_of(subnet)
    inventory = yaml.safe_load((PROJECT / "inventory" / "sandbox" / "hosts.yml").read_text())
    fixed = [
        ipaddress.ip_address(host["sandbox_address"])
        for host in inventory["all"]["children"]["sandbox_nodes"]["hosts"].values()
    ]
    sys.path.insert(0, str(PROJECT / "bench"))
    import site_noop

    assert subnet == site_noop.SANDBOX_SUBNET
    fixed += [subnet.network_address + site_noop.FIRST_ADDRESS + n for n in range(100)]
    assert fixed and all(address in subnet and address not in dynamic for address in fixed)
    assert len(set(fixed)) == len(fixed)
