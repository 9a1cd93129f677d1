#!/usr/bin/python
# Copyright: the gpu-node project contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: the node's InfiniBand HCAs and ports from sysfs, checked against the expected."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: infiniband_facts
short_description: InfiniBand HCAs on PCI and their ports from sysfs, checked against the expected
description:
  - Lists the Mellanox (vendor C(15b3)) cards on the PCI bus of class InfiniBand or Ethernet,
    with or without a driver, and every port under C(/sys/class/infiniband) with its state,
    physical state, rate, width, LID, link layer and error counters. Needs neither rdma-core nor
    a loaded driver, so it also decides what a bare server gets.
  - Checks every port found (ACTIVE / LinkUp, no link errors) and the O(expected_ports). A port
    missing, down, narrower or slower than expected is C(critical), and the finding names the
    HCA, the port and the likely cause, for example a width of 1X where 4X is expected (a
    degraded link, reseat or replace the cable).
  - Returns the facts under C(ansible_facts.infiniband); fails only on bad input. What to do
    with the findings is the caller's (the roles assert on them).
version_added: "1.0.0"
author: gpu-node project contributors (@gpu-node)
options:
  sysfs_root:
    description:
      - The directory above C(sys/class/infiniband) and C(sys/bus/pci/devices), C(/) on a server.
    type: path
    default: /
  expected_ports:
    description:
      - The ports the node must have, each with C(hca) and C(port) and any of C(rate_gbps)
        (C(100) for 4X EDR), C(width) (C(4X)), C(link_layer) (C(InfiniBand) or C(Ethernet)),
        C(fw_ver) and C(pci_address). Unset, every port found is only checked for state and
        errors.
    type: list
    elements: dict
attributes:
  check_mode:
    description: Only reads sysfs, so check mode returns the same facts and findings.
    support: full
  diff_mode:
    description: Changes nothing, so has no diff.
    support: none
seealso:
  - module: nvidia_pci_facts
"""

EXAMPLES = r"""
- name: Read the InfiniBand ports and check the one a cluster node must have
  infiniband_facts:
    expected_ports:
      - {hca: mlx5_0, port: 1, rate_gbps: 100, width: 4X, link_layer: InfiniBand}

- name: Stop on a port that is down or degraded
  ansible.builtin.assert:
    that: ansible_facts.infiniband.status != 'critical'
    fail_msg: "{{ ansible_facts.infiniband.findings | map(attribute='message') | join('; ') }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts under the key C(infiniband).
  returned: success
  type: complex
  contains:
    infiniband:
      description: HCAs, ports, findings.
      type: dict
      contains:
        hcas_on_pci:
          description: Mellanox cards on PCI with C(pci_address), C(device_id) and C(link)
            (C(infiniband) or C(ethernet)), in bus order.
          type: list
          elements: dict
          sample: [{"pci_address": "0000:5e:00.0", "device_id": "1017", "link": "infiniband"}]
        ports:
          description:
            - One per port with C(hca), C(port), C(state), C(phys_state), C(rate_gbps),
              C(width), C(speed), C(lid), C(link_layer), C(gid0), C(port_guid), C(node_guid),
              C(fw_ver), C(pci_address) and C(counters); what sysfs does not show is null.
          type: list
          elements: dict
        active_ports:
          description: C(hca:port) of the ports that are ACTIVE / LinkUp, as NCCL_IB_HCA takes them.
          type: list
          elements: str
          sample: ["mlx5_0:1"]
        findings:
          description: C(severity) (critical, warning, info), C(check), C(hca), C(port), C(message).
          type: list
          elements: dict
        status:
          description: The worst severity of the findings, C(ok) without any.
          type: str
          sample: ok
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.nvidia_gpu import ib_ports

SEVERITIES = ("critical", "warning", "info")


def main():
    module = AnsibleModule(
        argument_spec={
            "sysfs_root": {"type": "path", "default": "/"},
            "expected_ports": {"type": "list", "elements": "dict"},
        },
        supports_check_mode=True,
    )
    expected = module.params["expected_ports"]
    if expected is not None:
        try:
            expected = ib_ports.expected_ports(expected)
        except ValueError as error:
            module.fail_json(msg=str(error))
    root = module.params["sysfs_root"]
    ports = ib_ports.read_ports(root)
    findings = ib_ports.check_ports(ports, expected, ib_ports.read_pci_addresses(root))
    found = {finding["severity"] for finding in findings}
    facts = {
        "hcas_on_pci": ib_ports.read_hcas_on_pci(root),
        "ports": ports,
        "active_ports": [
            "%s:%d" % (port["hca"], port["port"])
            for port in ports
            if port["state"] == "ACTIVE" and port["phys_state"] == "LinkUp"
        ],
        "findings": findings,
        "status": next((severity for severity in SEVERITIES if severity in found), "ok"),
    }
    module.exit_json(changed=False, ansible_facts={"infiniband": facts})


if __name__ == "__main__":
    main()
