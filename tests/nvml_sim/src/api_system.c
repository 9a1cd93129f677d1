/* Library lifetime, system queries, device enumeration and handle lookups. */
#include <stdio.h>
#include <string.h>

#include "sim.h"

NVML_API nvmlReturn_t nvmlInitWithFlags(unsigned int flags)
{
    (void)flags; /* NO_GPUS cannot help: with every GPU absent the driver is not loaded */
    return sim_session_open();
}

NVML_API nvmlReturn_t nvmlInit_v2(void)
{
    return sim_session_open();
}

NVML_API nvmlReturn_t nvmlInit(void)
{
    return sim_session_open();
}

NVML_API nvmlReturn_t nvmlShutdown(void)
{
    return sim_session_close();
}

NVML_API const char *nvmlErrorString(nvmlReturn_t result)
{
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
    case NVML_ERROR_ALREADY_INITIALIZED: return "Already Initialized";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_INSUFFICIENT_POWER: return "Insufficient External Power";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_TIMEOUT: return "Timeout";
    case NVML_ERROR_IRQ_ISSUE: return "Interrupt request issue";
    case NVML_ERROR_LIBRARY_NOT_FOUND: return "NVML Shared Library Not Found";
    case NVML_ERROR_FUNCTION_NOT_FOUND: return "Function Not Found";
    case NVML_ERROR_CORRUPTED_INFOROM: return "Corrupted infoROM";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    case NVML_ERROR_RESET_REQUIRED: return "GPU requires restart";
    case NVML_ERROR_OPERATING_SYSTEM: return "The operating system has blocked the request";
    case NVML_ERROR_LIB_RM_VERSION_MISMATCH: return "RM has detected an NVML/RM version mismatch";
    case NVML_ERROR_IN_USE: return "In use by another client";
    case NVML_ERROR_MEMORY: return "Insufficient Memory";
    case NVML_ERROR_NO_DATA: return "No data";
    case NVML_ERROR_VGPU_ECC_NOT_SUPPORTED: return "ECC is not supported for vGPU";
    case NVML_ERROR_INSUFFICIENT_RESOURCES: return "Insufficient resources";
    case NVML_ERROR_FREQ_NOT_SUPPORTED: return "Frequency not supported";
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH: return "Argument version mismatch";
    case NVML_ERROR_DEPRECATED: return "Deprecated";
    case NVML_ERROR_NOT_READY: return "Not ready";
    case NVML_ERROR_GPU_NOT_FOUND: return "GPU not found";
    case NVML_ERROR_INVALID_STATE: return "Invalid state";
    case NVML_ERROR_RESET_TYPE_NOT_SUPPORTED: return "Reset type not supported";
    case NVML_ERROR_UNKNOWN: return "Unknown Error";
    }
    return "Unknown Error";
}

NVML_API nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
    if (!sim_initialized())
        return NVML_ERROR_UNINITIALIZED;
    return copy_string(version, length, g_profile.driver_version);
}

/* NVML's own version is the CUDA major version the driver ships with, then the driver's. */
NVML_API nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length)
{
    char text[96];
    if (!sim_initialized())
        return NVML_ERROR_UNINITIALIZED;
    snprintf(text, sizeof(text), "%u.%s", g_profile.cuda_driver_version / 1000,
             g_profile.driver_version);
    return copy_string(version, length, text);
}

NVML_API nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *version)
{
    if (!sim_initialized())
        return NVML_ERROR_UNINITIALIZED;
    return put_uint((unsigned int *)version, g_profile.cuda_driver_version);
}

NVML_API nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *version)
{
    return nvmlSystemGetCudaDriverVersion_v2(version);
}

NVML_API nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count)
{
    struct sim_state st;
    nvmlReturn_t rc = sim_enter(&st);
    return rc != NVML_SUCCESS ? rc : put_uint(count, dev_present_count(&st));
}

NVML_API nvmlReturn_t nvmlDeviceGetCount(unsigned int *count)
{
    return nvmlDeviceGetCount_v2(count);
}

/* Handle lookups succeed for a lost GPU (it is still enumerated); only queries on it fail. */
static nvmlReturn_t found(struct sim_state *st, unsigned int slot, nvmlDevice_t *device,
                          const char *func)
{
    nvmlReturn_t rc = dev_injected(st, slot, func);
    if (rc == NVML_SUCCESS)
        *device = dev_handle(slot);
    return rc;
}

NVML_API nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
{
    struct sim_state st;
    nvmlReturn_t rc = sim_enter(&st);
    if (rc != NVML_SUCCESS)
        return rc;
    if (device == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned int s = 0; s < g_profile.ngpus; s++)
        if (dev_visible_index(&st, s) == (int)index)
            return found(&st, s, device, __func__);
    return NVML_ERROR_INVALID_ARGUMENT;
}

NVML_API nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device)
{
    return nvmlDeviceGetHandleByIndex_v2(index, device);
}

NVML_API nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device)
{
    struct sim_state st;
    nvmlReturn_t rc = sim_enter(&st);
    if (rc != NVML_SUCCESS)
        return rc;
    if (uuid == NULL || device == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned int s = 0; s < g_profile.ngpus; s++)
        if (!dev_absent(&st, s) && strcmp(g_profile.gpus[s].uuid, uuid) == 0)
            return found(&st, s, device, __func__);
    return NVML_ERROR_NOT_FOUND;
}

NVML_API nvmlReturn_t nvmlDeviceGetHandleByPciBusId_v2(const char *bus_id, nvmlDevice_t *device)
{
    struct sim_state st;
    unsigned int domain, bus, dev, function;
    nvmlReturn_t rc = sim_enter(&st);
    if (rc != NVML_SUCCESS)
        return rc;
    if (bus_id == NULL || device == NULL ||
        !pci_parse_bus_id(bus_id, &domain, &bus, &dev, &function))
        return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned int s = 0; s < g_profile.ngpus; s++) {
        const struct sim_pci *p = &g_profile.gpus[s].pci;
        if (!dev_absent(&st, s) && p->domain == domain && p->bus == bus && p->device == dev &&
            p->function == function)
            return found(&st, s, device, __func__);
    }
    return NVML_ERROR_NOT_FOUND;
}

NVML_API nvmlReturn_t nvmlDeviceGetHandleByPciBusId(const char *bus_id, nvmlDevice_t *device)
{
    return nvmlDeviceGetHandleByPciBusId_v2(bus_id, device);
}

/* dev_begin has ruled out an absent GPU, whose index would be -1. */
static unsigned int visible_index(const struct dev_ctx *c)
{
    return (unsigned int)dev_visible_index(&c->st, c->slot);
}

NVML_API nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    return rc != NVML_SUCCESS ? rc : put_uint(index, visible_index(&c));
}

/* /dev/nvidiaN numbers are handed out at driver load in bus order to the GPUs it found. */
NVML_API nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t device, unsigned int *minor)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    return rc != NVML_SUCCESS ? rc : put_uint(minor, visible_index(&c));
}
