/*
 * Clocks: supported lists, application clocks, locked clocks, and clock event ("throttle")
 * reasons. An idle simulated GPU runs at its application clocks, held inside any locked range.
 */
#include "sim.h"

static unsigned int clamp(unsigned int v, unsigned int lo, unsigned int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static unsigned int app_gfx(const struct dev_ctx *c)
{
    return c->gs->app_gfx_mhz ? c->gs->app_gfx_mhz : c->model->default_app_gfx_mhz;
}

static unsigned int app_mem(const struct dev_ctx *c)
{
    return c->gs->app_mem_mhz ? c->gs->app_mem_mhz : c->model->default_app_mem_mhz;
}

static unsigned int current_clock(const struct dev_ctx *c, nvmlClockType_t type)
{
    const struct sim_gpu_state *g = c->gs;
    switch (type) {
    case NVML_CLOCK_GRAPHICS:
    case NVML_CLOCK_SM:
        return g->gpu_lock_max ? clamp(app_gfx(c), g->gpu_lock_min, g->gpu_lock_max) : app_gfx(c);
    case NVML_CLOCK_MEM:
        return g->mem_lock_max ? clamp(app_mem(c), g->mem_lock_min, g->mem_lock_max) : app_mem(c);
    default:
        return c->model->max_video_mhz;
    }
}

NVML_API nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, nvmlClockType_t type,
                                             unsigned int *clock)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    if (rc == NVML_SUCCESS && (unsigned int)type >= NVML_CLOCK_COUNT)
        rc = NVML_ERROR_INVALID_ARGUMENT;
    return rc != NVML_SUCCESS ? rc : put_uint(clock, current_clock(&c, type));
}

static unsigned int max_clock(const struct sim_model *m, nvmlClockType_t type)
{
    switch (type) {
    case NVML_CLOCK_GRAPHICS:
    case NVML_CLOCK_SM:
        return m->gfx_max_mhz;
    case NVML_CLOCK_MEM:
        return m->mem_max_mhz;
    default:
        return m->max_video_mhz;
    }
}

NVML_API nvmlReturn_t nvmlDeviceGetMaxClockInfo(nvmlDevice_t device, nvmlClockType_t type,
                                                unsigned int *clock)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    if (rc == NVML_SUCCESS && (unsigned int)type >= NVML_CLOCK_COUNT)
        rc = NVML_ERROR_INVALID_ARGUMENT;
    return rc != NVML_SUCCESS ? rc : put_uint(clock, max_clock(c.model, type));
}

/* Application clocks exist for graphics (= SM) and memory only. */
static nvmlReturn_t app_clock(const struct dev_ctx *c, nvmlClockType_t type, bool target,
                              unsigned int *clock)
{
    const struct sim_model *m = c->model;
    switch (type) {
    case NVML_CLOCK_GRAPHICS:
    case NVML_CLOCK_SM:
        return put_uint(clock, target ? app_gfx(c) : m->default_app_gfx_mhz);
    case NVML_CLOCK_MEM:
        return put_uint(clock, target ? app_mem(c) : m->default_app_mem_mhz);
    case NVML_CLOCK_VIDEO:
        return NVML_ERROR_NOT_SUPPORTED;
    default:
        return NVML_ERROR_INVALID_ARGUMENT;
    }
}

NVML_API nvmlReturn_t nvmlDeviceGetApplicationsClock(nvmlDevice_t device, nvmlClockType_t type,
                                                     unsigned int *clock)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    return rc != NVML_SUCCESS ? rc : app_clock(&c, type, true, clock);
}

NVML_API nvmlReturn_t nvmlDeviceGetDefaultApplicationsClock(nvmlDevice_t device,
                                                            nvmlClockType_t type,
                                                            unsigned int *clock)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    return rc != NVML_SUCCESS ? rc : app_clock(&c, type, false, clock);
}

NVML_API nvmlReturn_t nvmlDeviceGetClock(nvmlDevice_t device, nvmlClockType_t type,
                                         nvmlClockId_t id, unsigned int *clock)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    if (rc == NVML_SUCCESS && (unsigned int)type >= NVML_CLOCK_COUNT)
        rc = NVML_ERROR_INVALID_ARGUMENT;
    if (rc != NVML_SUCCESS)
        return rc;
    switch (id) {
    case NVML_CLOCK_ID_CURRENT:
        return put_uint(clock, current_clock(&c, type));
    case NVML_CLOCK_ID_APP_CLOCK_TARGET:
        return app_clock(&c, type, true, clock);
    case NVML_CLOCK_ID_APP_CLOCK_DEFAULT:
        return app_clock(&c, type, false, clock);
    case NVML_CLOCK_ID_CUSTOMER_BOOST_MAX:
        return put_uint(clock, max_clock(c.model, type));
    }
    return NVML_ERROR_INVALID_ARGUMENT;
}

/* NVML's list protocol: too small a buffer gets INSUFFICIENT_SIZE and the count it needs. */
static nvmlReturn_t put_list(unsigned int *count, unsigned int *out, const unsigned int *list,
                             unsigned int n)
{
    if (count == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (*count < n) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    if (out == NULL && n > 0)
        return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned int i = 0; i < n; i++)
        out[i] = list[i];
    *count = n;
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetSupportedMemoryClocks(nvmlDevice_t device, unsigned int *count,
                                                         unsigned int *clocks)
{
    struct dev_ctx c;
    unsigned int mems[SIM_MAX_MEM_CLOCKS];
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    if (rc != NVML_SUCCESS)
        return rc;
    for (unsigned int t = 0; t < c.model->nclock_tables; t++)
        mems[t] = c.model->clocks[t].mem_mhz;
    return put_list(count, clocks, mems, c.model->nclock_tables);
}

NVML_API nvmlReturn_t nvmlDeviceGetSupportedGraphicsClocks(nvmlDevice_t device,
                                                           unsigned int mem_mhz,
                                                           unsigned int *count,
                                                           unsigned int *clocks)
{
    struct dev_ctx c;
    const struct sim_clock_table *t;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    if (rc != NVML_SUCCESS)
        return rc;
    t = model_clock_table(c.model, mem_mhz);
    if (t == NULL)
        return NVML_ERROR_NOT_FOUND;
    return put_list(count, clocks, t->gfx_mhz, t->ngfx);
}

NVML_API nvmlReturn_t nvmlDeviceSetApplicationsClocks(nvmlDevice_t device, unsigned int mem_mhz,
                                                      unsigned int gfx_mhz)
{
    struct dev_ctx c;
    int lock_fd;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    if (rc == NVML_SUCCESS)
        rc = dev_require_root();
    if (rc == NVML_SUCCESS && !model_clock_supported(c.model, mem_mhz, gfx_mhz))
        rc = NVML_ERROR_INVALID_ARGUMENT;
    if (rc == NVML_SUCCESS)
        rc = state_lock(&c.st, &lock_fd);
    if (rc != NVML_SUCCESS)
        return rc;
    c.gs->app_mem_mhz = mem_mhz;
    c.gs->app_gfx_mhz = gfx_mhz;
    return state_commit(lock_fd, &c.st);
}

NVML_API nvmlReturn_t nvmlDeviceResetApplicationsClocks(nvmlDevice_t device)
{
    struct dev_ctx c;
    int lock_fd;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    if (rc == NVML_SUCCESS)
        rc = dev_require_root();
    if (rc == NVML_SUCCESS)
        rc = state_lock(&c.st, &lock_fd);
    if (rc != NVML_SUCCESS)
        return rc;
    c.gs->app_mem_mhz = c.gs->app_gfx_mhz = 0;
    return state_commit(lock_fd, &c.st);
}

/*
 * Locked clocks; `mem` selects the memory domain, a reset stores 0 - 0. The range must lie
 * within what the GPU supports; real NVML also takes NVML_CLOCK_LIMIT_ID_* values, which the
 * simulator rejects as out of range.
 */
static nvmlReturn_t set_locked(nvmlDevice_t device, bool mem, bool reset, unsigned int lo,
                               unsigned int hi, const char *func)
{
    struct dev_ctx c;
    int lock_fd;
    nvmlReturn_t rc = dev_begin(&c, device, func);
    if (rc == NVML_SUCCESS &&
        !(mem ? c.model->arch->mem_locked_clocks : c.model->arch->gpu_locked_clocks))
        rc = NVML_ERROR_NOT_SUPPORTED;
    if (rc == NVML_SUCCESS)
        rc = dev_require_root();
    if (rc == NVML_SUCCESS && !reset &&
        (lo > hi || lo < (mem ? c.model->mem_min_mhz : c.model->gfx_min_mhz) ||
         hi > (mem ? c.model->mem_max_mhz : c.model->gfx_max_mhz)))
        rc = NVML_ERROR_INVALID_ARGUMENT;
    if (rc == NVML_SUCCESS)
        rc = state_lock(&c.st, &lock_fd);
    if (rc != NVML_SUCCESS)
        return rc;
    *(mem ? &c.gs->mem_lock_min : &c.gs->gpu_lock_min) = lo;
    *(mem ? &c.gs->mem_lock_max : &c.gs->gpu_lock_max) = hi;
    return state_commit(lock_fd, &c.st);
}

NVML_API nvmlReturn_t nvmlDeviceSetGpuLockedClocks(nvmlDevice_t device, unsigned int min_mhz,
                                                   unsigned int max_mhz)
{
    return set_locked(device, false, false, min_mhz, max_mhz, __func__);
}

NVML_API nvmlReturn_t nvmlDeviceResetGpuLockedClocks(nvmlDevice_t device)
{
    return set_locked(device, false, true, 0, 0, __func__);
}

NVML_API nvmlReturn_t nvmlDeviceSetMemoryLockedClocks(nvmlDevice_t device, unsigned int min_mhz,
                                                      unsigned int max_mhz)
{
    return set_locked(device, true, false, min_mhz, max_mhz, __func__);
}

NVML_API nvmlReturn_t nvmlDeviceResetMemoryLockedClocks(nvmlDevice_t device)
{
    return set_locked(device, true, true, 0, 0, __func__);
}

/*
 * A GPU without load reports "idle", a loaded one nothing, unless `nvml-sim fault N throttle
 * MASK` replaced the reasons. On top come the reasons the simulated readings imply: at or above
 * the slowdown temperature, hardware thermal slowdown (with the hardware slowdown summary bit
 * and software thermal slowdown); at or above the power limit, the software power cap.
 */
static unsigned long long event_reasons(const struct dev_ctx *c)
{
    unsigned long long base = c->gs->load_pct == 0 ? NVML_CLOCKS_EVENT_REASON_GPU_IDLE : 0;
    unsigned long long r = c->gs->has_throttle ? c->gs->throttle : base;
    if (temperature_current(c) >= c->model->temp_slowdown)
        r |= NVML_CLOCKS_EVENT_REASON_HW_SLOWDOWN | NVML_CLOCKS_EVENT_REASON_HW_THERMAL |
             NVML_CLOCKS_EVENT_REASON_SW_THERMAL;
    if (power_usage_current(c) >= power_limit_current(c))
        r |= NVML_CLOCKS_EVENT_REASON_SW_POWER_CAP;
    return r;
}

NVML_API nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t device,
                                                             unsigned long long *reasons)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    return rc != NVML_SUCCESS ? rc : put_ull(reasons, event_reasons(&c));
}

NVML_API nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t device,
                                                                unsigned long long *reasons)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    return rc != NVML_SUCCESS ? rc : put_ull(reasons, event_reasons(&c));
}

NVML_API nvmlReturn_t nvmlDeviceGetSupportedClocksEventReasons(nvmlDevice_t device,
                                                               unsigned long long *reasons)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    return rc != NVML_SUCCESS ? rc : put_ull(reasons, NVML_CLOCKS_EVENT_REASON_ALL);
}

NVML_API nvmlReturn_t nvmlDeviceGetSupportedClocksThrottleReasons(nvmlDevice_t device,
                                                                  unsigned long long *reasons)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    return rc != NVML_SUCCESS ? rc : put_ull(reasons, NVML_CLOCKS_EVENT_REASON_ALL);
}
