/*
 * NVLink, from the wiring in the profile. A link is active when it is wired, neither end was
 * taken down with `nvml-sim fault N nvlink-down L`, and a peer GPU is present and not lost.
 * Links a GPU has but the board leaves unwired (a PCIe card without a bridge) are inactive and
 * have no remote end.
 */
#include <string.h>

#include "sim.h"

bool nvlink_active(const struct sim_state *st, unsigned int slot, unsigned int link)
{
    const struct sim_link *l = &g_profile.gpus[slot].links[link];
    if (l->kind == PEER_NONE || (st->gpu[slot].nvlink_down & (1ULL << link)))
        return false;
    return l->kind == PEER_SWITCH ||
           (dev_usable(st, l->peer) && !(st->gpu[l->peer].nvlink_down & (1ULL << l->peer_link)));
}

/* The guard of every per-link query: GPUs without NVLink have none, others a fixed number. */
static nvmlReturn_t link_begin(struct dev_ctx *c, nvmlDevice_t device, unsigned int link,
                               const char *func)
{
    nvmlReturn_t rc = dev_begin(c, device, func);
    if (rc == NVML_SUCCESS && c->model->nvlinks == 0)
        rc = NVML_ERROR_NOT_SUPPORTED;
    if (rc == NVML_SUCCESS && link >= c->model->nvlinks)
        rc = NVML_ERROR_INVALID_ARGUMENT;
    return rc;
}

NVML_API nvmlReturn_t nvmlDeviceGetNvLinkState(nvmlDevice_t device, unsigned int link,
                                               nvmlEnableState_t *active)
{
    struct dev_ctx c;
    nvmlReturn_t rc = link_begin(&c, device, link, __func__);
    if (rc != NVML_SUCCESS)
        return rc;
    return put_uint((unsigned int *)active, nvlink_active(&c.st, c.slot, link));
}

NVML_API nvmlReturn_t nvmlDeviceGetNvLinkVersion(nvmlDevice_t device, unsigned int link,
                                                 unsigned int *version)
{
    struct dev_ctx c;
    nvmlReturn_t rc = link_begin(&c, device, link, __func__);
    return rc != NVML_SUCCESS ? rc : put_uint(version, c.model->arch->nvlink_version);
}

/* x86 hosts: peer-to-peer and its atomics over NVLink, no system memory access over it. */
NVML_API nvmlReturn_t nvmlDeviceGetNvLinkCapability(nvmlDevice_t device, unsigned int link,
                                                    nvmlNvLinkCapability_t capability,
                                                    unsigned int *result)
{
    struct dev_ctx c;
    bool wired, yes;
    nvmlReturn_t rc = link_begin(&c, device, link, __func__);
    if (rc == NVML_SUCCESS && (unsigned int)capability >= NVML_NVLINK_CAP_COUNT)
        rc = NVML_ERROR_INVALID_ARGUMENT;
    if (rc != NVML_SUCCESS)
        return rc;
    wired = c.gpu->links[link].kind != PEER_NONE;
    yes = capability == NVML_NVLINK_CAP_P2P_SUPPORTED ||
          capability == NVML_NVLINK_CAP_P2P_ATOMICS || capability == NVML_NVLINK_CAP_VALID;
    return put_uint(result, wired && yes);
}

static nvmlReturn_t remote_begin(struct dev_ctx *c, nvmlDevice_t device, unsigned int link,
                                 const char *func)
{
    nvmlReturn_t rc = link_begin(c, device, link, func);
    if (rc == NVML_SUCCESS && c->gpu->links[link].kind == PEER_NONE)
        rc = NVML_ERROR_NOT_SUPPORTED;
    return rc;
}

static const struct sim_pci *remote_pci(const struct sim_link *l)
{
    return l->kind == PEER_GPU ? &g_profile.gpus[l->peer].pci : &g_profile.switches[l->peer];
}

NVML_API nvmlReturn_t nvmlDeviceGetNvLinkRemotePciInfo_v2(nvmlDevice_t device, unsigned int link,
                                                          nvmlPciInfo_t *pci)
{
    struct dev_ctx c;
    nvmlReturn_t rc = remote_begin(&c, device, link, __func__);
    if (rc == NVML_SUCCESS && pci == NULL)
        rc = NVML_ERROR_INVALID_ARGUMENT;
    if (rc == NVML_SUCCESS)
        pci_info_fill(pci, remote_pci(&c.gpu->links[link]));
    return rc;
}

/* Version 1 fills the legacy layout, whose bus id field is the short one. */
NVML_API nvmlReturn_t nvmlDeviceGetNvLinkRemotePciInfo(nvmlDevice_t device, unsigned int link,
                                                       nvmlPciInfo_v2_t *pci)
{
    struct dev_ctx c;
    nvmlPciInfo_t full;
    nvmlReturn_t rc = remote_begin(&c, device, link, __func__);
    if (rc == NVML_SUCCESS && pci == NULL)
        rc = NVML_ERROR_INVALID_ARGUMENT;
    if (rc != NVML_SUCCESS)
        return rc;
    pci_info_fill(&full, remote_pci(&c.gpu->links[link]));
    memset(pci, 0, sizeof(*pci));
    memcpy(pci->busId, full.busIdLegacy, sizeof(pci->busId));
    pci->domain = full.domain;
    pci->bus = full.bus;
    pci->device = full.device;
    pci->pciDeviceId = full.pciDeviceId;
    pci->pciSubSystemId = full.pciSubSystemId;
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetNvLinkRemoteDeviceType(nvmlDevice_t device, unsigned int link,
                                                          nvmlIntNvLinkDeviceType_t *type)
{
    struct dev_ctx c;
    nvmlReturn_t rc = remote_begin(&c, device, link, __func__);
    if (rc != NVML_SUCCESS)
        return rc;
    return put_uint((unsigned int *)type, c.gpu->links[link].kind == PEER_GPU
                                              ? NVML_NVLINK_DEVICE_TYPE_GPU
                                              : NVML_NVLINK_DEVICE_TYPE_SWITCH);
}

NVML_API nvmlReturn_t nvmlDeviceGetNvLinkErrorCounter(nvmlDevice_t device, unsigned int link,
                                                      nvmlNvLinkErrorCounter_t counter,
                                                      unsigned long long *value)
{
    struct dev_ctx c;
    nvmlReturn_t rc = link_begin(&c, device, link, __func__);
    if (rc == NVML_SUCCESS && (unsigned int)counter >= NVML_NVLINK_ERROR_COUNT)
        rc = NVML_ERROR_INVALID_ARGUMENT;
    return rc != NVML_SUCCESS ? rc : put_ull(value, c.gs->nvlink_errors[link][counter]);
}

NVML_API nvmlReturn_t nvmlDeviceResetNvLinkErrorCounters(nvmlDevice_t device, unsigned int link)
{
    struct dev_ctx c;
    int lock_fd;
    nvmlReturn_t rc = link_begin(&c, device, link, __func__);
    if (rc == NVML_SUCCESS)
        rc = dev_require_root();
    if (rc == NVML_SUCCESS)
        rc = state_lock(&c.st, &lock_fd);
    if (rc != NVML_SUCCESS)
        return rc;
    memset(c.gs->nvlink_errors[link], 0, sizeof(c.gs->nvlink_errors[link]));
    return state_commit(lock_fd, &c.st);
}
