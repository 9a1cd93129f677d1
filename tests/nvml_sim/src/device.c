/*
 * The library session (nvmlInit reference count, the loaded profile) and the guard that every
 * device entry point runs first: initialised? valid handle? GPU lost? injected failure?
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "sim.h"

struct sim_profile g_profile;

/* A handle is the address of its slot's entry here: stable across nvmlShutdown/nvmlInit, so
   handles a long-lived caller kept stay valid, as they do with the real library. */
struct nvmlDevice_st {
    char unused;
};
static struct nvmlDevice_st g_handles[SIM_MAX_GPUS];

static atomic_uint g_init_count;
static pthread_mutex_t g_init_lock = PTHREAD_MUTEX_INITIALIZER;

bool sim_initialized(void)
{
    return atomic_load(&g_init_count) > 0;
}

nvmlDevice_t dev_handle(unsigned int slot)
{
    return &g_handles[slot];
}

static bool dev_slot(nvmlDevice_t device, unsigned int *slot)
{
    /* Integer arithmetic: comparing unrelated pointers is undefined in C. */
    uintptr_t p = (uintptr_t)device, base = (uintptr_t)g_handles;
    if (p < base || (p - base) % sizeof(g_handles[0]) != 0)
        return false;
    *slot = (unsigned int)((p - base) / sizeof(g_handles[0]));
    return *slot < g_profile.ngpus;
}

bool dev_absent(const struct sim_state *st, unsigned int slot)
{
    return st->gpu[slot].absent || g_profile.gpus[slot].empty;
}

bool dev_usable(const struct sim_state *st, unsigned int slot)
{
    return !dev_absent(st, slot) && !st->gpu[slot].lost;
}

unsigned int dev_present_count(const struct sim_state *st)
{
    unsigned int n = 0;
    for (unsigned int s = 0; s < g_profile.ngpus; s++)
        n += !dev_absent(st, s);
    return n;
}

int dev_visible_index(const struct sim_state *st, unsigned int slot)
{
    int index = 0;
    if (dev_absent(st, slot))
        return -1;
    for (unsigned int s = 0; s < slot; s++)
        index += !dev_absent(st, s);
    return index;
}

nvmlReturn_t sim_session_open(void)
{
    struct sim_state st;
    nvmlReturn_t rc = NVML_SUCCESS;

    pthread_mutex_lock(&g_init_lock);
    if (atomic_load(&g_init_count) == 0) {
        rc = profile_load(&g_profile);
        if (rc == NVML_SUCCESS) {
            state_load(&st);
            /* With no GPU to bind, the kernel module refuses to load. */
            if (dev_present_count(&st) == 0)
                rc = NVML_ERROR_DRIVER_NOT_LOADED;
        }
    }
    if (rc == NVML_SUCCESS)
        atomic_fetch_add(&g_init_count, 1);
    pthread_mutex_unlock(&g_init_lock);
    return rc;
}

nvmlReturn_t sim_session_close(void)
{
    nvmlReturn_t rc = NVML_SUCCESS;
    pthread_mutex_lock(&g_init_lock);
    if (atomic_load(&g_init_count) == 0)
        rc = NVML_ERROR_UNINITIALIZED;
    else
        atomic_fetch_sub(&g_init_count, 1);
    pthread_mutex_unlock(&g_init_lock);
    return rc;
}

nvmlReturn_t sim_enter(struct sim_state *st)
{
    if (!sim_initialized())
        return NVML_ERROR_UNINITIALIZED;
    state_load(st);
    return NVML_SUCCESS;
}

/* Faults name an entry point without its version suffix, so one fault covers every version. */
static bool same_function(const char *fault, const char *func)
{
    size_t len = strlen(func);
    const char *v = strrchr(func, '_');
    if (v != NULL && v[1] == 'v' && v[2] != '\0' && strspn(v + 2, "0123456789") == strlen(v + 2))
        len = (size_t)(v - func);
    return strlen(fault) == len && strncmp(fault, func, len) == 0;
}

static struct sim_fail *find_fail(struct sim_gpu_state *g, const char *func)
{
    for (unsigned int i = 0; i < g->nfails; i++)
        if (same_function(g->fails[i].func, func))
            return &g->fails[i];
    return NULL;
}

nvmlReturn_t dev_injected(struct sim_state *st, unsigned int slot, const char *func)
{
    struct sim_fail *f = find_fail(&st->gpu[slot], func);
    nvmlReturn_t error;
    int lock_fd;

    if (f == NULL || (f->times < 0 && f->after == 0))
        return f == NULL ? NVML_SUCCESS : f->error;
    /* A counted fault: decide under the lock, or two processes could use up the same one. */
    error = f->error;
    if (state_lock(st, &lock_fd) != NVML_SUCCESS)
        return error; /* cannot count it down: still fail, so the fault is not lost */
    f = find_fail(&st->gpu[slot], func);
    if (f == NULL) {
        state_unlock(lock_fd);
        return NVML_SUCCESS;
    }
    error = f->error;
    if (f->after > 0) {
        f->after--;
        error = NVML_SUCCESS;
    } else if (f->times > 0 && --f->times == 0) {
        struct sim_gpu_state *g = &st->gpu[slot];
        *f = g->fails[--g->nfails];
    }
    (void)state_commit(lock_fd, st); /* on a write error the fault just stays armed */
    return error;
}

nvmlReturn_t dev_begin(struct dev_ctx *c, nvmlDevice_t device, const char *func)
{
    if (!sim_initialized())
        return NVML_ERROR_UNINITIALIZED;
    if (!dev_slot(device, &c->slot))
        return NVML_ERROR_INVALID_ARGUMENT;
    c->gpu = &g_profile.gpus[c->slot];
    c->model = c->gpu->model;
    c->gs = &c->st.gpu[c->slot];
    state_load(&c->st);
    if (!dev_usable(&c->st, c->slot))
        return NVML_ERROR_GPU_IS_LOST;
    return dev_injected(&c->st, c->slot, func);
}

nvmlReturn_t dev_require_root(void)
{
    return geteuid() == 0 ? NVML_SUCCESS : NVML_ERROR_NO_PERMISSION;
}
