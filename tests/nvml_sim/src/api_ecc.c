/*
 * Memory errors: ECC counters, page retirement (up to Volta and Turing) and row remapping
 * (Ampere and later). Counts come from `nvml-sim fault N ecc|retired-pages|remapped-rows`.
 */
#include "sim.h"

NVML_API nvmlReturn_t nvmlDeviceGetEccMode(nvmlDevice_t device, nvmlEnableState_t *current,
                                           nvmlEnableState_t *pending)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    if (rc == NVML_SUCCESS && !c.model->ecc)
        rc = NVML_ERROR_NOT_SUPPORTED;
    if (rc == NVML_SUCCESS && pending == NULL)
        rc = NVML_ERROR_INVALID_ARGUMENT;
    if (rc == NVML_SUCCESS)
        rc = put_uint((unsigned int *)current, NVML_FEATURE_ENABLED);
    if (rc == NVML_SUCCESS)
        *pending = NVML_FEATURE_ENABLED;
    return rc;
}

/* Errors counted since boot (volatile) are also part of the lifetime (aggregate) count. */
static nvmlReturn_t ecc_count(const struct dev_ctx *c, nvmlMemoryErrorType_t error,
                              nvmlEccCounterType_t counter, unsigned long long *count)
{
    const struct sim_gpu_state *g = c->gs;
    unsigned long long volatile_count, aggregate;
    if (!c->model->ecc)
        return NVML_ERROR_NOT_SUPPORTED;
    if ((unsigned int)error > NVML_DOUBLE_BIT_ECC || (unsigned int)counter > NVML_AGGREGATE_ECC)
        return NVML_ERROR_INVALID_ARGUMENT;
    volatile_count = g->ecc[NVML_VOLATILE_ECC][error];
    aggregate = g->ecc[NVML_AGGREGATE_ECC][error];
    if (counter == NVML_VOLATILE_ECC)
        return put_ull(count, volatile_count);
    return put_ull(count, aggregate > volatile_count ? aggregate : volatile_count);
}

NVML_API nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t device,
                                                  nvmlMemoryErrorType_t error,
                                                  nvmlEccCounterType_t counter,
                                                  unsigned long long *count)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    return rc != NVML_SUCCESS ? rc : ecc_count(&c, error, counter, count);
}

/* Injected errors are in device memory; the on-chip memories (L1, L2, register file) stay 0. */
NVML_API nvmlReturn_t nvmlDeviceGetMemoryErrorCounter(nvmlDevice_t device,
                                                      nvmlMemoryErrorType_t error,
                                                      nvmlEccCounterType_t counter,
                                                      nvmlMemoryLocation_t location,
                                                      unsigned long long *count)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    if (rc != NVML_SUCCESS)
        return rc;
    rc = ecc_count(&c, error, counter, count);
    if (rc != NVML_SUCCESS || location == NVML_MEMORY_LOCATION_DEVICE_MEMORY)
        return rc;
    if ((unsigned int)location > NVML_MEMORY_LOCATION_REGISTER_FILE)
        return NVML_ERROR_NOT_SUPPORTED;
    *count = 0;
    return NVML_SUCCESS;
}

/* Page addresses and retirement times are made up, but stable for a given count. */
#define PAGE_BASE(cause) \
    ((cause) == NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR ? 0x5c2e0ULL : 0x3a1c0ULL)
#define PAGE_STRIDE 0x1fULL
#define RETIRED_AT 1735689600ULL /* 2025-01-01 00:00 UTC */

static nvmlReturn_t retired_pages(nvmlDevice_t device, nvmlPageRetirementCause_t cause,
                                  unsigned int *count, unsigned long long *addresses,
                                  unsigned long long *timestamps, const char *func)
{
    struct dev_ctx c;
    unsigned int n;
    nvmlReturn_t rc = dev_begin(&c, device, func);
    if (rc == NVML_SUCCESS && !c.model->arch->page_retirement)
        rc = NVML_ERROR_NOT_SUPPORTED;
    if (rc == NVML_SUCCESS &&
        ((unsigned int)cause >= NVML_PAGE_RETIREMENT_CAUSE_COUNT || count == NULL))
        rc = NVML_ERROR_INVALID_ARGUMENT;
    if (rc != NVML_SUCCESS)
        return rc;
    n = c.gs->retired_pages[cause];
    if (*count < n) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    if (n > 0 && addresses == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned int i = 0; i < n; i++) {
        addresses[i] = PAGE_BASE(cause) + i * PAGE_STRIDE;
        if (timestamps != NULL)
            timestamps[i] = RETIRED_AT + i * 3600ULL;
    }
    *count = n;
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetRetiredPages(nvmlDevice_t device,
                                                nvmlPageRetirementCause_t cause,
                                                unsigned int *count, unsigned long long *addresses)
{
    return retired_pages(device, cause, count, addresses, NULL, __func__);
}

NVML_API nvmlReturn_t nvmlDeviceGetRetiredPages_v2(nvmlDevice_t device,
                                                   nvmlPageRetirementCause_t cause,
                                                   unsigned int *count,
                                                   unsigned long long *addresses,
                                                   unsigned long long *timestamps)
{
    return retired_pages(device, cause, count, addresses, timestamps, __func__);
}

NVML_API nvmlReturn_t nvmlDeviceGetRetiredPagesPendingStatus(nvmlDevice_t device,
                                                             nvmlEnableState_t *pending)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    if (rc == NVML_SUCCESS && !c.model->arch->page_retirement)
        rc = NVML_ERROR_NOT_SUPPORTED;
    return rc != NVML_SUCCESS ? rc : put_uint((unsigned int *)pending, c.gs->retired_pending);
}

NVML_API nvmlReturn_t nvmlDeviceGetRemappedRows(nvmlDevice_t device, unsigned int *corrected,
                                                unsigned int *uncorrected, unsigned int *pending,
                                                unsigned int *failure)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    if (rc == NVML_SUCCESS && !c.model->arch->row_remapping)
        rc = NVML_ERROR_NOT_SUPPORTED;
    if (rc == NVML_SUCCESS &&
        (corrected == NULL || uncorrected == NULL || pending == NULL || failure == NULL))
        rc = NVML_ERROR_INVALID_ARGUMENT;
    if (rc == NVML_SUCCESS) {
        *corrected = c.gs->remapped[0];
        *uncorrected = c.gs->remapped[1];
        *pending = c.gs->remapped[2];
        *failure = c.gs->remapped[3];
    }
    return rc;
}
