"""The Ubuntu paths without an Ubuntu mirror: the roles' own templates and variables rendered with
Ansible's templating for Ubuntu 22.04 / 24.04 facts (and Debian 12 for comparison), asserting the
apt sources, preferences, package lists, library paths and nccl.conf they produce."""

from pathlib import Path

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROLES = Path(__file__).resolve().parent.parent / "roles"
LOADER = DataLoader()

UBUNTU = {
    "22.04": {"distribution_release": "jammy"},
    "24.04": {"distribution_release": "noble"},
}


def facts(distribution, version, release, architecture="x86_64", **extra):
    return dict(
        distribution=distribution,
        distribution_version=version,
        distribution_major_version=version.split(".")[0],
        distribution_release=release,
        architecture=architecture,
        virtualization_role="host",
        virtualization_type="kvm",
        **extra,
    )


def ubuntu(version, **extra):
    return facts("Ubuntu", version, UBUNTU[version]["distribution_release"], **extra)


def debian12(**extra):
    return facts("Debian", "12", "bookworm", **extra)


def selection(branch=580, flavour="proprietary", version="580.95.05", fabric_manager=False):
    return {
        "branch": branch,
        "kernel_modules": flavour,
        "upstream_version": version,
        "fabric_manager": fabric_manager,
        "cuda_version": "12.8",
        "cuda_install": "12.8",
    }


# What the nvidia_driver, cuda and nccl roles pass to common's cuda_repo.
CUDA_REPO_INPUTS = {
    "common_cuda_repo_url": "{{ nvidia_driver_cuda_repo_url }}",
    "common_cuda_repo_key_file": "{{ nvidia_driver_cuda_repo_key_file }}",
    "common_cuda_repo_key_fingerprint": "{{ nvidia_driver_cuda_repo_key_fingerprint }}",
}


class Play:
    """The variables a play sees after the roles' defaults, vars and OS vars are loaded."""

    def __init__(self, node_facts, roles=("nvidia_driver", "cuda", "nccl", "common"), **inventory):
        variables = {"ansible_managed": "Ansible managed"}
        for role in roles:
            variables.update(self._load(role, "defaults/main.yml"))
        for role in roles:
            variables.update(self._load(role, "vars/main.yml"))
            variables.update(self._load(role, "vars/%s.yml" % node_facts["distribution"]))
        variables.update({name: trust_as_template(text) for name, text in CUDA_REPO_INPUTS.items()})
        variables.update(inventory)
        variables["ansible_facts"] = node_facts
        self.templar = Templar(loader=LOADER, variables=variables)

    @staticmethod
    def _load(role, name):
        path = ROLES / role / name
        if not path.exists():  # common has no vars per OS
            return {}
        return LOADER.load_from_file(str(path), trusted_as_template=True) or {}

    def var(self, name):
        return self.templar.template(trust_as_template("{{ %s }}" % name))

    def template(self, role, name):
        text = (ROLES / role / "templates" / name).read_text()
        return self.templar.template(trust_as_template(text))


def content(text):
    """Lines that are not comments, as a file would be read."""
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize(("version", "distro"), [("22.04", "ubuntu2204"), ("24.04", "ubuntu2404")])
def test_cuda_repository_source_is_deb822_with_signed_by(version, distro):
    play = Play(ubuntu(version))
    assert play.var("nvidia_driver_source_name") == "nvidia"
    sources = play.template("common", "cuda-repo.sources.j2")
    assert sources.startswith("#\n# Ansible managed\n#\n")
    assert content(sources) == [
        "Types: deb",
        "URIs: https://developer.download.nvidia.com/compute/cuda/repos/%s/x86_64/" % distro,
        "Suites: /",
        "Signed-By: /etc/apt/keyrings/nvidia-cuda.asc",
    ]
    assert play.var("common_cuda_repo_sources") == "/etc/apt/sources.list.d/nvidia-cuda.sources"
    key_url = play.var("common_cuda_repo ~ common_cuda_repo_key_file")
    assert key_url == (
        "https://developer.download.nvidia.com/compute/cuda/repos/%s/x86_64/3bf863cc.pub" % distro
    )


def test_cuda_repository_on_arm_servers_is_sbsa():
    play = Play(ubuntu("24.04", architecture="aarch64"))
    assert play.var("common_cuda_repo").endswith("/ubuntu2404/sbsa/")


def test_cuda_repository_preference_pins_by_label_not_host():
    preferences = Play(ubuntu("22.04")).template("common", "cuda-repo.pref.j2")
    assert content(preferences) == ["Package: *", "Pin: release l=NVIDIA CUDA", "Pin-Priority: 600"]


@pytest.mark.parametrize("version", ["22.04", "24.04"])
def test_local_mirror_serves_every_source(version):
    play = Play(ubuntu(version), nvidia_driver_mirror_url="http://mirror.example:8080")
    short = version.replace(".", "")
    assert "URIs: http://mirror.example:8080/cuda/repos/ubuntu%s/x86_64/" % short in content(
        play.template("common", "cuda-repo.sources.j2")
    )
    assert play.var("nccl_pip_index_url") == "http://mirror.example:8080/pypi/simple"
    debian = Play(debian12(), nvidia_driver_mirror_url="http://mirror.example:8080")
    nonfree = content(debian.template("nvidia_driver", "debian-nonfree.sources.j2"))
    assert "URIs: http://mirror.example:8080/debian" in nonfree
    assert "URIs: http://mirror.example:8080/debian-security" in nonfree


def test_without_a_mirror_pip_uses_its_own_configuration():
    assert Play(debian12()).var("nccl_pip_index_url") == ""


@pytest.mark.parametrize("version", ["22.04", "24.04"])
@pytest.mark.parametrize(
    ("flavour", "headless", "dkms"),
    [
        ("proprietary", "nvidia-headless-580", "nvidia-dkms-580"),
        ("open", "nvidia-headless-580-open", "nvidia-dkms-580-open"),
    ],
)
def test_ubuntu_driver_packages_pinned_to_the_chosen_version(version, flavour, headless, dkms):
    play = Play(ubuntu(version, nvidia_driver_selection=selection(flavour=flavour)))
    assert play.var("nvidia_driver_install_specs") == [
        headless + "=580.95.05*",
        dkms + "=580.95.05*",
        "nvidia-utils-580=580.95.05*",
        "libnvidia-compute-580=580.95.05*",
        "nvidia-compute-utils-580=580.95.05*",
    ]
    assert play.var("nvidia_driver_hold_names") == [
        headless,
        dkms,
        "nvidia-utils-580",
        "libnvidia-compute-580",
        "nvidia-compute-utils-580",
    ]
    assert play.var("nvidia_driver_source_spec['module']") == "nvidia"


def test_ubuntu_fabric_manager_only_with_nvswitches():
    with_switches = Play(ubuntu("22.04", nvidia_driver_selection=selection(fabric_manager=True)))
    assert "nvidia-fabricmanager-580=580.95.05*" in with_switches.var("nvidia_driver_install_specs")
    assert "nvidia-fabricmanager-580" in with_switches.var("nvidia_driver_hold_names")
    without = Play(ubuntu("22.04", nvidia_driver_selection=selection()))
    assert not [p for p in without.var("nvidia_driver_install_specs") if "fabricmanager" in p]


def test_ubuntu_canonical_server_packages():
    play = Play(
        ubuntu("24.04", nvidia_driver_selection=selection(branch=570, version="570.195.03")),
        nvidia_driver_source="ubuntu",
    )
    assert play.var("nvidia_driver_source_spec['label']") == (
        "Ubuntu 24.04 restricted (-server packages)"
    )
    assert play.var("nvidia_driver_install_specs")[:2] == [
        "nvidia-headless-570-server=570.195.03*",
        "nvidia-dkms-570-server=570.195.03*",
    ]


@pytest.mark.parametrize("version", ["22.04", "24.04"])
def test_ubuntu_probes_find_branches_in_package_names(version):
    probes = Play(ubuntu(version)).var("nvidia_driver_source_spec['probes']")
    assert probes == {
        "proprietary": "^nvidia-headless-[0-9]+$",
        "open": "^nvidia-headless-[0-9]+-open$",
    }


def test_debian_driver_packages_pinned_except_persistenced():
    play = Play(debian12(nvidia_driver_selection=selection(branch=535, version="535.309.01")))
    assert play.var("nvidia_driver_source_name") == "debian"
    assert play.var("nvidia_driver_install_specs") == [
        "nvidia-kernel-dkms=535.309.01*",
        "nvidia-smi=535.309.01*",
        "libnvidia-ml1=535.309.01*",
        "libcuda1=535.309.01*",
        "libnvidia-cfg1=535.309.01*",
        "nvidia-persistenced",
    ]
    nonfree = content(play.template("nvidia_driver", "debian-nonfree.sources.j2"))
    assert "Suites: bookworm bookworm-updates" in nonfree
    assert "Suites: bookworm-security" in nonfree
    assert nonfree.count("Components: contrib non-free non-free-firmware") == 2


@pytest.mark.parametrize(("version", "distro"), [("22.04", "ubuntu2204"), ("24.04", "ubuntu2404")])
def test_ubuntu_cuda_toolkit_and_paths(version, distro):
    play = Play(ubuntu(version, cuda_selection=selection()))
    assert play.var("cuda_source_name") == "nvidia"
    assert play.var("cuda_package_specs") == ["cuda-toolkit-12-8"]
    assert play.var("cuda_home") == "/usr/local/cuda-12.8"
    profile = play.template("cuda", "cuda.sh.j2")
    assert "# CUDA 12.8 from NVIDIA's CUDA repository (%s)." % distro in profile
    assert "export CUDA_HOME=/usr/local/cuda-12.8" in profile
    assert '*) PATH="/usr/local/cuda-12.8/bin:${PATH}"; export PATH ;;' in profile
    assert content(play.template("cuda", "cuda-ld.conf.j2")) == ["/usr/local/cuda-12.8/lib64"]


def test_ubuntu_archive_cuda_toolkit_has_no_library_path_of_its_own():
    play = Play(
        ubuntu("24.04", cuda_selection=dict(selection(), cuda_install="12.0")), cuda_source="ubuntu"
    )
    assert play.var("cuda_package_specs") == ["nvidia-cuda-toolkit=12.0*"]
    assert play.var("cuda_lib_dirs") == []
    assert play.var("cuda_home") == "/usr"


@pytest.mark.parametrize("version", ["22.04", "24.04"])
def test_ubuntu_nccl_from_the_cuda_repository(version):
    play = Play(ubuntu(version, cuda_selection=selection()))
    assert play.var("nccl_source_name") == "nvidia"
    assert play.var("nccl_package_specs") == [
        "libnccl2=2.27.7-*+cuda12.*",
        "libnccl-dev=2.27.7-*+cuda12.*",
    ]


def test_debian_nccl_wheel_under_opt():
    play = Play(debian12(cuda_selection=selection()))
    assert play.var("nccl_source_name") == "pypi"
    assert play.var("nccl_wheel") == "nvidia-nccl-cu12==2.27.7"
    assert play.var("nccl_lib_dir") == "/opt/nccl/2.27.7-cu12/nvidia/nccl/lib"
    assert content(play.template("nccl", "nccl-ld.conf.j2")) == [
        "/opt/nccl/2.27.7-cu12/nvidia/nccl/lib"
    ]


def nccl_conf(play):
    return dict(line.split("=", 1) for line in content(play.template("nccl", "nccl.conf.j2")))


def test_nccl_conf_single_nvlink_node():
    assert nccl_conf(Play(ubuntu("22.04", cuda_selection=selection()))) == {
        "NCCL_DEBUG": "WARN",
        "NCCL_IB_DISABLE": "1",
    }


def test_nccl_conf_infiniband_cluster_from_inventory():
    play = Play(
        ubuntu("24.04", cuda_selection=selection()),
        nccl_ib_hcas=["mlx5_0:1", "mlx5_1:1"],
        nccl_socket_ifname="ib0",
        nccl_ib_gid_index=3,
        nccl_net_gdr_level="PHB",
        nccl_conf_extra={"NCCL_DEBUG": "INFO", "NCCL_IB_TIMEOUT": "22"},
    )
    assert play.var("nccl_topology_resolved") == "infiniband"
    assert nccl_conf(play) == {
        "NCCL_DEBUG": "INFO",
        "NCCL_IB_DISABLE": "0",
        "NCCL_IB_GID_INDEX": "3",
        "NCCL_IB_HCA": "mlx5_0:1,mlx5_1:1",
        "NCCL_IB_TIMEOUT": "22",
        "NCCL_NET_GDR_LEVEL": "PHB",
        "NCCL_SOCKET_IFNAME": "ib0",
    }
