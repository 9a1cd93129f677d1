/* Power readings and limits, persistence mode and compute mode. Power is in milliwatts. */
#include "sim.h"

unsigned int power_limit_current(const struct dev_ctx *c)
{
    return c->gs->power_limit_mw ? c->gs->power_limit_mw : c->model->power_default_mw;
}

/* Draw rises linearly with the load from idle up to the enforced limit: a GPU under full GEMM
   load sits at its power cap. Computed on every call, so it follows a later limit change. The
   nvml-sim tool has the same formula (gpu_power_mw) to sum the draws on the 12 V rail. */
unsigned int power_usage_current(const struct dev_ctx *c)
{
    unsigned int idle = c->gpu->idle_power_mw, limit = power_limit_current(c);
    if (c->gs->has_power)
        return c->gs->power_mw;
    if (limit <= idle)
        return idle;
    return idle + (unsigned int)((unsigned long long)c->gs->load_pct * (limit - idle) / 100);
}

NVML_API nvmlReturn_t nvmlDeviceGetPersistenceMode(nvmlDevice_t device, nvmlEnableState_t *mode)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    return rc != NVML_SUCCESS ? rc : put_uint((unsigned int *)mode, c.gs->persistence);
}

NVML_API nvmlReturn_t nvmlDeviceSetPersistenceMode(nvmlDevice_t device, nvmlEnableState_t mode)
{
    struct dev_ctx c;
    int lock_fd;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    if (rc == NVML_SUCCESS)
        rc = dev_require_root();
    if (rc == NVML_SUCCESS && mode != NVML_FEATURE_DISABLED && mode != NVML_FEATURE_ENABLED)
        rc = NVML_ERROR_INVALID_ARGUMENT;
    if (rc == NVML_SUCCESS)
        rc = state_lock(&c.st, &lock_fd);
    if (rc != NVML_SUCCESS)
        return rc;
    c.gs->persistence = mode == NVML_FEATURE_ENABLED;
    return state_commit(lock_fd, &c.st);
}

NVML_API nvmlReturn_t nvmlDeviceGetComputeMode(nvmlDevice_t device, nvmlComputeMode_t *mode)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    return rc != NVML_SUCCESS ? rc : put_uint((unsigned int *)mode, c.gs->compute_mode);
}

NVML_API nvmlReturn_t nvmlDeviceSetComputeMode(nvmlDevice_t device, nvmlComputeMode_t mode)
{
    struct dev_ctx c;
    int lock_fd;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    if (rc == NVML_SUCCESS)
        rc = dev_require_root();
    if (rc == NVML_SUCCESS && (unsigned int)mode >= NVML_COMPUTEMODE_COUNT)
        rc = NVML_ERROR_INVALID_ARGUMENT;
    if (rc == NVML_SUCCESS && mode == NVML_COMPUTEMODE_EXCLUSIVE_THREAD)
        rc = NVML_ERROR_NOT_SUPPORTED; /* removed from the driver long ago */
    if (rc == NVML_SUCCESS)
        rc = state_lock(&c.st, &lock_fd);
    if (rc != NVML_SUCCESS)
        return rc;
    c.gs->compute_mode = mode;
    return state_commit(lock_fd, &c.st);
}

NVML_API nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    return rc != NVML_SUCCESS ? rc : put_uint(power, power_usage_current(&c));
}

NVML_API nvmlReturn_t nvmlDeviceGetPowerManagementMode(nvmlDevice_t device,
                                                       nvmlEnableState_t *mode)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    return rc != NVML_SUCCESS ? rc : put_uint((unsigned int *)mode, NVML_FEATURE_ENABLED);
}

NVML_API nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t device, unsigned int *limit)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    return rc != NVML_SUCCESS ? rc : put_uint(limit, power_limit_current(&c));
}

/* Nothing else (no board or thermal cap) lowers the limit in the simulator. */
NVML_API nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    return rc != NVML_SUCCESS ? rc : put_uint(limit, power_limit_current(&c));
}

NVML_API nvmlReturn_t nvmlDeviceGetPowerManagementDefaultLimit(nvmlDevice_t device,
                                                               unsigned int *limit)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    return rc != NVML_SUCCESS ? rc : put_uint(limit, c.model->power_default_mw);
}

NVML_API nvmlReturn_t nvmlDeviceGetPowerManagementLimitConstraints(nvmlDevice_t device,
                                                                   unsigned int *min_limit,
                                                                   unsigned int *max_limit)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    if (rc == NVML_SUCCESS && max_limit == NULL)
        rc = NVML_ERROR_INVALID_ARGUMENT;
    if (rc == NVML_SUCCESS)
        rc = put_uint(min_limit, c.model->power_min_mw);
    if (rc == NVML_SUCCESS)
        *max_limit = c.model->power_max_mw;
    return rc;
}

static nvmlReturn_t set_power_limit(struct dev_ctx *c, unsigned int limit)
{
    int lock_fd;
    nvmlReturn_t rc = dev_require_root();
    if (rc == NVML_SUCCESS && (limit < c->model->power_min_mw || limit > c->model->power_max_mw))
        rc = NVML_ERROR_INVALID_ARGUMENT;
    if (rc == NVML_SUCCESS)
        rc = state_lock(&c->st, &lock_fd);
    if (rc != NVML_SUCCESS)
        return rc;
    c->gs->power_limit_mw = limit;
    return state_commit(lock_fd, &c->st);
}

NVML_API nvmlReturn_t nvmlDeviceSetPowerManagementLimit(nvmlDevice_t device, unsigned int limit)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    return rc != NVML_SUCCESS ? rc : set_power_limit(&c, limit);
}

/* Only the GPU scope exists here; module and memory scopes belong to Grace Hopper and later. */
NVML_API nvmlReturn_t nvmlDeviceSetPowerManagementLimit_v2(nvmlDevice_t device,
                                                           nvmlPowerValue_v2_t *value)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    if (rc == NVML_SUCCESS && value == NULL)
        rc = NVML_ERROR_INVALID_ARGUMENT;
    if (rc == NVML_SUCCESS && value->version != nvmlPowerValue_v2)
        rc = NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    if (rc == NVML_SUCCESS && value->powerScope != NVML_POWER_SCOPE_GPU)
        rc = NVML_ERROR_NOT_SUPPORTED;
    return rc != NVML_SUCCESS ? rc : set_power_limit(&c, value->powerValueMw);
}
