# Two commands for newcomers: `make demo` and `make test`. Everything else is a step they use.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PYTHON ?= python3
BUILD := build
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_FORCE_COLOR ?= 1

SIM_DIR := $(BUILD)/nvml-sim
HARDWARE_DIR := $(BUILD)/hardware
SIM_PROFILES := $(notdir $(basename $(wildcard tests/nvml_sim/profiles/*.conf)))
IB_SIM_PROFILES := $(notdir $(basename $(wildcard tests/ib_sim/profiles/*.conf)))
SANDBOX_STATE_DIR ?= /var/lib/gpu-node-sandbox
export SANDBOX_STATE_DIR
# Every molecule scenario, run in this order by `make molecule` (molecule/default is a stub).
SCENARIOS ?= $(filter-out default,$(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))

.PHONY: help
help: ## Show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt constraints.txt | host
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r requirements.txt -c constraints.txt
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Python virtualenv with the pinned tools (and the host tools it needs)

.PHONY: host
host: ## Install podman/runc/debootstrap if missing (as root) and adapt podman to this host
	sandbox/host-setup.sh

.PHONY: image
image: host ## Build (or reuse) the sandbox node image
	sandbox/build-image.sh

.PHONY: sim
sim: ## Build the NVML simulator and the simulated hardware of every profile
	$(MAKE) --no-print-directory -C tests/nvml_sim BUILD_DIR=$(CURDIR)/$(SIM_DIR)/lib
	rm -rf $(SIM_DIR)/bin $(SIM_DIR)/profiles && mkdir -p $(SIM_DIR)/bin
	cp -r tests/nvml_sim/profiles $(SIM_DIR)/profiles
	install -m 0755 tests/nvml_sim/nvml-sim $(SIM_DIR)/bin/nvml-sim
	@# The PCI tree as sysfs shows it on a freshly booted node of each profile (no faults, no
	@# swapped hardware), updated in place; each sandbox node gets its own copy. gpu-count:
	@# how many /dev/nvidiaN device files a node of the profile gets (the GPUs pci.py finds).
	empty_state=$$(mktemp -d) && for profile in $(SIM_PROFILES); do \
	  mkdir -p $(HARDWARE_DIR)/$$profile/etc && \
	  echo $$profile > $(HARDWARE_DIR)/$$profile/etc/profile && \
	  NVML_SIM_PROFILE_DIR=tests/nvml_sim/profiles NVML_SIM_PROFILE=$$profile \
	  NVML_SIM_STATE_DIR=$$empty_state NVML_SIM_HARDWARE_DIR=$$empty_state \
	  tests/nvml_sim/nvml-sim sysfs $(HARDWARE_DIR)/$$profile/pci \
	  || exit 1; \
	  PYTHONPATH=module_utils $(PYTHON) -c 'import sys; from nvidia_gpu import pci; \
	    print(pci.discover(sys.argv[1])["count"])' $(HARDWARE_DIR)/$$profile/pci \
	    > $(HARDWARE_DIR)/$$profile/gpu-count || exit 1; \
	done; rm -rf $$empty_state
	@# Which InfiniBand profile a node has (mounted at /etc/ib-sim where it has one).
	for profile in $(IB_SIM_PROFILES); do \
	  mkdir -p $(HARDWARE_DIR)/ib/$$profile && echo $$profile > $(HARDWARE_DIR)/ib/$$profile/profile; \
	done

.PHONY: sandbox-up
sandbox-up: venv image sim ## Start the sandbox nodes of inventory/sandbox
	ansible-playbook sandbox/nodes.yml -e sandbox_state=started

.PHONY: sandbox-prepare
sandbox-prepare: venv ## What all sandbox nodes share: SSH key, BMC password, network, caches
	ansible-playbook sandbox/nodes.yml -e sandbox_state=prepared

.PHONY: sandbox-down
sandbox-down: venv ## Remove the sandbox nodes
	ansible-playbook sandbox/nodes.yml -e sandbox_state=absent

# FAULT="2 lost" (any `nvml-sim fault` arguments) breaks a GPU after site.yml: the node's gpu-health
# timer finds it (status file, node_exporter's /metrics), then the health play does.
DEMO_NODE ?= sandbox-gpu1
# ansible-playbook against the sandbox inventories; SANDBOX_CONNECTION=podman reaches the nodes
# through `podman exec` (inventory/sandbox/group_vars/sandbox_nodes.yml).
SANDBOX_PLAYBOOK = ansible-playbook $(if $(SANDBOX_CONNECTION),-e sandbox_connection=$(SANDBOX_CONNECTION))
.PHONY: demo
demo: sandbox-up ## site.yml on the sandbox node, then its validation run (FAULT="2 lost": break GPU 2)
	$(SANDBOX_PLAYBOOK) -i inventory/sandbox site.yml
	$(SANDBOX_PLAYBOOK) -i inventory/sandbox playbooks/validate.yml
ifdef FAULT
	podman exec $(DEMO_NODE) nvml-sim fault $(FAULT)
	sandbox/show-health.sh $(DEMO_NODE)
	$(SANDBOX_PLAYBOOK) -i inventory/sandbox playbooks/health.yml
endif

# WEAK_PSU=1: the simulated 12 V supply sags under load (a corroded lug), as on the seed machine.
.PHONY: burn-in
burn-in: sandbox-up ## A 1-minute burn-in of the sandbox node (WEAK_PSU=1: on a weak 12 V supply)
ifdef WEAK_PSU
	podman exec $(DEMO_NODE) nvml-sim fault psu ohm 0.008
endif
	$(SANDBOX_PLAYBOOK) -i inventory/sandbox playbooks/burn-in.yml -e gpu_health_burn_in_cycles=5 \
	  -e gpu_health_burn_in_high_s=5 -e gpu_health_burn_in_low_s=5 -e gpu_health_burn_in_sustained_s=10 \
	  || { podman exec $(DEMO_NODE) sh -c 'nvml-sim reset && systemctl restart gpu-tuning'; exit 1; }

# The cluster of inventory/sandbox-cluster: a Slurm controller and two GPU nodes (simulated
# T180-G20s, one simulated ConnectX port each).
CLUSTER_INVENTORY := inventory/sandbox-cluster
.PHONY: demo-cluster
demo-cluster: venv image sim ## A 3-node Slurm cluster of sandbox nodes: site.yml, sinfo, a 2-node DDP job
	ansible-playbook -i $(CLUSTER_INVENTORY) sandbox/nodes.yml -e sandbox_state=started
	$(SANDBOX_PLAYBOOK) -i $(CLUSTER_INVENTORY) site.yml
	podman exec sandbox-ctl sinfo --Node --format '%N %T %G %f'
	podman exec sandbox-dl1 sh -c 'cd /tmp && sbatch --wait --nodes=2 --export=ALL,GPU_NODE_PROCS=2 \
	  /opt/gpu-node/training/gpu-ddp.sbatch --output /tmp/gpu-ddp.json'
	podman exec sandbox-dl1 python3 -c 'import json; s = json.load(open("/tmp/gpu-ddp.json")); \
	  print("DDP job %(result)s: world size %(world_size)d on %(nodes)d nodes (%(backend)s)," \
	  " loss %(first_loss).3f -> %(last_loss).4f in %(steps)d steps" % s)'

.PHONY: cluster-down
cluster-down: venv ## Remove the nodes of the sandbox cluster
	ansible-playbook -i $(CLUSTER_INVENTORY) sandbox/nodes.yml -e sandbox_state=absent

.PHONY: sandbox-reboot
sandbox-reboot: ## Reboot the sandbox node: faults go, gpu-tuning.service re-applies the settings
	podman restart $(DEMO_NODE) >/dev/null
	@# systemctl needs the manager's socket, which PID 1 creates a moment after the restart.
	timeout 60 sh -c 'until podman exec $(DEMO_NODE) test -S /run/systemd/private; do sleep 0.5; done'
	podman exec $(DEMO_NODE) systemctl is-system-running --wait
	podman exec $(DEMO_NODE) systemctl status --no-pager --lines 8 gpu-tuning.service

.PHONY: lint
lint: venv ## ansible-lint (production profile), yamllint, ruff, ansible-test validate-modules
	yamllint --strict .
	ansible-lint --profile production
	ruff check .
	ruff format --check .
	@# Molecule's verify steps only import their tests on a node: catch a broken import now.
	pytest --collect-only -q molecule >/dev/null
	tests/sanity/validate-modules.py

# One pytest worker more than cores: some tests wait on simulated hardware (burn-in phases, a
# BMC's polls), which a third worker can fill on 2 cores. Back to back here: 133 s against 142 and
# 151 s with two; in CI runs 2:13 to 2:21 against 2:20 to 2:24, within the machine's drift.
UNIT_JOBS ?= $(shell echo $$(( $$(nproc) + 1 )))
.PHONY: unit
unit: venv sim ## Python tests: simulator, module_utils, modules (no containers)
	pytest -n $(UNIT_JOBS) tests

.PHONY: molecule
molecule: venv image sim ## Every molecule scenario, with idempotence
	for scenario in $(SCENARIOS); do molecule test -s $$scenario || exit 1; done

# Stages in order, each one's time at the end (also when one fails). The scenarios run side by
# side, TEST_JOBS at once, longest first (SCENARIO_ORDER, from the times in the README; a scenario
# not listed runs last): on 2 cores, 3 at once beat 2 (they wait on nodes booting and on SSH), and
# the unit tests beside them slowed the whole run. Plain `make`, not $(MAKE): `make -n test` only
# prints this line instead of running the stages.
TEST_JOBS ?= 3
SCENARIO_ORDER := site cluster health nvidia_driver stacks gpu_tuning gpu_control base
.PHONY: test
test: ## Everything CI runs, with each stage's time at the end
	$(PYTHON) tests/timed_stages.py --jobs $(TEST_JOBS) --path-first $(CURDIR)/$(VENV)/bin \
	  "setup=make --no-print-directory venv image sim sandbox-prepare" \
	  "lint=make --no-print-directory lint" "unit=make --no-print-directory unit" \
	  $(foreach scenario,$(filter $(SCENARIOS),$(SCENARIO_ORDER)) $(filter-out $(SCENARIO_ORDER),$(SCENARIOS)),\
	    "+molecule $(scenario)=molecule test -s $(scenario)")

.PHONY: bench
bench: bench-facts bench-site ## Benchmarks: facts in one call vs per GPU, then site.yml on sandbox nodes

.PHONY: bench-facts
bench-facts: venv sim ## Benchmark: facts in one call vs one process per GPU (simulated T180-G20)
	NVML_SIM_PROFILE_DIR=$(CURDIR)/tests/nvml_sim/profiles NVML_SIM_PROFILE=t180-g20 \
	NVML_SIM_STATE_DIR=$$(mktemp -d) LD_LIBRARY_PATH=$(CURDIR)/$(SIM_DIR)/lib \
	  $(VENV)/bin/python bench/facts_one_call_vs_per_gpu.py

# BENCH_ARGS="--nodes 4 --repeats 5 --keep" changes what bench/site_noop.py measures.
.PHONY: bench-site
bench-site: venv image sim ## Benchmark: site.yml first converge and no-op, 1 and 8 nodes, SSH vs podman
	$(VENV)/bin/python bench/site_noop.py $(BENCH_ARGS)

.PHONY: hardware-kit
hardware-kit: venv ## pynvml.py for tests/hardware/readonly_check.py on machines without it
	mkdir -p $(BUILD)/hardware-kit
	cp $(VENV)/lib/python3*/site-packages/pynvml.py $(BUILD)/hardware-kit/

.PHONY: clean
clean: ## Remove build outputs (not the venv or the image)
	rm -rf $(BUILD)
