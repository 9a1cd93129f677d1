/* The PCIe link of each GPU, and how two GPUs reach each other: topology and peer-to-peer. */
#include <string.h>

#include "sim.h"

static unsigned int curr_gen(const struct dev_ctx *c)
{
    return c->gs->has_pcie ? c->gs->pcie_gen : c->model->pcie_max_gen;
}

static unsigned int curr_width(const struct dev_ctx *c)
{
    return c->gs->has_pcie ? c->gs->pcie_width : c->model->pcie_max_width;
}

NVML_API nvmlReturn_t nvmlDeviceGetCurrPcieLinkGeneration(nvmlDevice_t device, unsigned int *gen)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    return rc != NVML_SUCCESS ? rc : put_uint(gen, curr_gen(&c));
}

NVML_API nvmlReturn_t nvmlDeviceGetCurrPcieLinkWidth(nvmlDevice_t device, unsigned int *width)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    return rc != NVML_SUCCESS ? rc : put_uint(width, curr_width(&c));
}

NVML_API nvmlReturn_t nvmlDeviceGetMaxPcieLinkGeneration(nvmlDevice_t device, unsigned int *gen)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    return rc != NVML_SUCCESS ? rc : put_uint(gen, c.model->pcie_max_gen);
}

NVML_API nvmlReturn_t nvmlDeviceGetMaxPcieLinkWidth(nvmlDevice_t device, unsigned int *width)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    return rc != NVML_SUCCESS ? rc : put_uint(width, c.model->pcie_max_width);
}

NVML_API nvmlReturn_t nvmlDeviceGetPcieReplayCounter(nvmlDevice_t device, unsigned int *value)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    return rc != NVML_SUCCESS ? rc : put_uint(value, c.gs->pcie_replays);
}

/* Both GPUs must be usable; an injected failure on either one applies. */
static nvmlReturn_t pair_begin(struct dev_ctx *a, struct dev_ctx *b, nvmlDevice_t d1,
                               nvmlDevice_t d2, const char *func)
{
    nvmlReturn_t rc = dev_begin(a, d1, func);
    return rc != NVML_SUCCESS ? rc : dev_begin(b, d2, func);
}

/* PCIe only (NVLink does not count): a shared PCIe switch, else the same CPU socket. */
static nvmlGpuTopologyLevel_t pcie_level(const struct sim_gpu *a, const struct sim_gpu *b)
{
    if (a == b)
        return NVML_TOPOLOGY_INTERNAL;
    if (a->pcie_switch[0] != '\0' && strcmp(a->pcie_switch, b->pcie_switch) == 0)
        return NVML_TOPOLOGY_SINGLE;
    return a->numa_node == b->numa_node ? NVML_TOPOLOGY_NODE : NVML_TOPOLOGY_SYSTEM;
}

NVML_API nvmlReturn_t nvmlDeviceGetTopologyCommonAncestor(nvmlDevice_t d1, nvmlDevice_t d2,
                                                          nvmlGpuTopologyLevel_t *level)
{
    struct dev_ctx a, b;
    nvmlReturn_t rc = pair_begin(&a, &b, d1, d2, __func__);
    return rc != NVML_SUCCESS ? rc : put_uint((unsigned int *)level, pcie_level(a.gpu, b.gpu));
}

/* Directly, or both through NVSwitches (every switch of a baseboard reaches every GPU). */
static bool nvlink_connected(const struct sim_state *st, unsigned int s1, unsigned int s2)
{
    bool a_switch = false, b_switch = false;
    for (unsigned int l = 0; l < SIM_MAX_LINKS; l++) {
        const struct sim_link *la = &g_profile.gpus[s1].links[l];
        if (nvlink_active(st, s1, l) && la->kind == PEER_GPU && la->peer == s2)
            return true;
        a_switch |= nvlink_active(st, s1, l) && la->kind == PEER_SWITCH;
        b_switch |= nvlink_active(st, s2, l) && g_profile.gpus[s2].links[l].kind == PEER_SWITCH;
    }
    return a_switch && b_switch;
}

/* Over NVLink everything works; over PCIe, reads and writes within one CPU socket, but no
   atomics; across sockets the chipset does not forward peer-to-peer traffic. */
NVML_API nvmlReturn_t nvmlDeviceGetP2PStatus(nvmlDevice_t d1, nvmlDevice_t d2,
                                             nvmlGpuP2PCapsIndex_t index,
                                             nvmlGpuP2PStatus_t *status)
{
    struct dev_ctx a, b;
    nvmlGpuP2PStatus_t result;
    nvmlReturn_t rc = pair_begin(&a, &b, d1, d2, __func__);
    if (rc == NVML_SUCCESS &&
        (a.slot == b.slot || (unsigned int)index >= NVML_P2P_CAPS_INDEX_UNKNOWN))
        rc = NVML_ERROR_INVALID_ARGUMENT;
    if (rc != NVML_SUCCESS)
        return rc;
    if (nvlink_connected(&a.st, a.slot, b.slot))
        result = NVML_P2P_STATUS_OK;
    else if (index == NVML_P2P_CAPS_INDEX_NVLINK || index == NVML_P2P_CAPS_INDEX_ATOMICS)
        result = NVML_P2P_STATUS_NOT_SUPPORTED;
    else if (a.gpu->numa_node == b.gpu->numa_node)
        result = NVML_P2P_STATUS_OK;
    else
        result = NVML_P2P_STATUS_CHIPSET_NOT_SUPPORTED;
    return put_uint((unsigned int *)status, result);
}
