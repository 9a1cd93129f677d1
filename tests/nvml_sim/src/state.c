/*
 * Runtime state shared by every process that uses the simulated driver: settings made through
 * NVML and faults injected with the nvml-sim tool. It lives in a directory under /run by
 * default, so a reboot clears it just like a real driver forgets its settings.
 *
 * Readers take no lock: writers take an flock on "lock", write "state.tmp" and rename it over
 * "state", so a reader always sees one complete version. The line format is shared with the
 * nvml-sim tool and documented in ../README.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sim.h"

#define DEFAULT_STATE_DIR "/run/nvml-sim"

static void state_path(char *out, size_t len, const char *file)
{
    const char *dir = getenv("NVML_SIM_STATE_DIR");
    snprintf(out, len, "%s/%s", dir != NULL && *dir != '\0' ? dir : DEFAULT_STATE_DIR, file);
}

static bool parse_u64(const char *text, unsigned long long *out)
{
    char *end;
    if (*text < '0' || *text > '9')
        return false;
    *out = strtoull(text, &end, 0);
    return *end == '\0';
}

static void parse_fail(struct sim_gpu_state *g, char **arg, unsigned int nargs)
{
    unsigned long long error;
    char *end;
    long times, after = 0;
    if ((nargs != 3 && nargs != 4) || g->nfails == SIM_MAX_FAILS ||
        strlen(arg[0]) >= SIM_FUNC_LEN || !parse_u64(arg[1], &error))
        return;
    times = strtol(arg[2], &end, 10);
    if (*end != '\0')
        return;
    if (nargs == 4) {
        after = strtol(arg[3], &end, 10);
        if (*end != '\0' || after < 0)
            return;
    }
    struct sim_fail *f = &g->fails[g->nfails++];
    strcpy(f->func, arg[0]);
    f->error = (nvmlReturn_t)error;
    f->times = times < 0 ? -1 : (int)times;
    f->after = (int)after;
}

/* One "node KEY VALUE" line: the node's power supply. */
static void parse_node(struct sim_node_state *n, char **tok, unsigned int ntok)
{
    unsigned long long v;
    if (ntok != 3 || !parse_u64(tok[2], &v) || v > UINT_MAX)
        return;
    if (strcmp(tok[1], "psu_ohm_uohm") == 0) {
        n->has_psu_ohm = true;
        n->psu_uohm = (unsigned int)v;
    } else if (strcmp(tok[1], "psu_voltage_mv") == 0) {
        n->has_psu_voltage = true;
        n->psu_voltage_mv = (unsigned int)v;
    }
}

/* One "SLOT KEY ARGS..." line. Lines this version does not understand are skipped. */
static void parse_entry(struct sim_state *st, char **tok, unsigned int ntok)
{
    unsigned long long a[4] = {0};
    unsigned int slot, nargs = ntok - 2;
    if (ntok >= 2 && strcmp(tok[0], "node") == 0) {
        parse_node(&st->node, tok, ntok);
        return;
    }
    if (ntok < 2 || !parse_uint(tok[0], &slot) || slot >= SIM_MAX_GPUS)
        return;
    struct sim_gpu_state *g = &st->gpu[slot];
    const char *key = tok[1];
    if (strcmp(key, "fail") == 0) {
        parse_fail(g, tok + 2, nargs);
        return;
    }
    if (nargs > 4)
        return;
    for (unsigned int i = 0; i < nargs; i++)
        if (!parse_u64(tok[2 + i], &a[i]))
            return;
#define IS(name, n) (strcmp(key, name) == 0 && nargs == (n))
    if (IS("persistence", 0)) {
        g->persistence = true;
    } else if (IS("power_limit_mw", 1)) {
        g->power_limit_mw = (unsigned int)a[0];
    } else if (IS("app_clocks", 2)) {
        g->app_mem_mhz = (unsigned int)a[0];
        g->app_gfx_mhz = (unsigned int)a[1];
    } else if (IS("gpu_locked_clocks", 2)) {
        g->gpu_lock_min = (unsigned int)a[0];
        g->gpu_lock_max = (unsigned int)a[1];
    } else if (IS("mem_locked_clocks", 2)) {
        g->mem_lock_min = (unsigned int)a[0];
        g->mem_lock_max = (unsigned int)a[1];
    } else if (IS("compute_mode", 1)) {
        g->compute_mode = (unsigned int)a[0];
    } else if (IS("absent", 0)) {
        g->absent = true;
    } else if (IS("lost", 0)) {
        g->lost = true;
    } else if (IS("nvlink_down", 1) && a[0] < SIM_MAX_LINKS) {
        g->nvlink_down |= 1ULL << a[0];
    } else if (IS("nvlink_errors", 3) && a[0] < SIM_MAX_LINKS && a[1] < NVML_NVLINK_ERROR_COUNT) {
        g->nvlink_errors[a[0]][a[1]] = a[2];
    } else if (IS("ecc", 3) && a[0] < 2 && a[1] < 2) {
        g->ecc[a[0]][a[1]] = a[2];
    } else if (IS("retired_pages", 2) && a[0] < NVML_PAGE_RETIREMENT_CAUSE_COUNT) {
        g->retired_pages[a[0]] = (unsigned int)a[1];
    } else if (IS("retired_pending", 0)) {
        g->retired_pending = true;
    } else if (IS("remapped_rows", 4)) {
        for (int i = 0; i < 4; i++)
            g->remapped[i] = (unsigned int)a[i];
    } else if (IS("throttle", 1)) {
        g->has_throttle = true;
        g->throttle = a[0];
    } else if (IS("temperature", 1)) {
        g->has_temp = true;
        g->temp_c = (unsigned int)a[0];
    } else if (IS("power_usage_mw", 1)) {
        g->has_power = true;
        g->power_mw = (unsigned int)a[0];
    } else if (IS("pcie_link", 2)) {
        g->has_pcie = true;
        g->pcie_gen = (unsigned int)a[0];
        g->pcie_width = (unsigned int)a[1];
    } else if (IS("pcie_replays", 1)) {
        g->pcie_replays = (unsigned int)a[0];
    } else if (IS("heatsink_milli", 1)) {
        g->heatsink_milli = (unsigned int)a[0];
    } else if (IS("load", 1) && a[0] <= 100) {
        g->load_pct = (unsigned int)a[0];
    }
#undef IS
}

void state_load(struct sim_state *st)
{
    char path[PATH_MAX], *buf, *save = NULL;
    struct stat sb;
    int fd;

    memset(st, 0, sizeof(*st));
    state_path(path, sizeof(path), "state");
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return; /* no state yet: everything at its boot default */
    buf = fstat(fd, &sb) == 0 ? malloc((size_t)sb.st_size + 1) : NULL;
    if (buf != NULL) {
        ssize_t got = read(fd, buf, (size_t)sb.st_size);
        buf[got > 0 ? got : 0] = '\0';
        for (char *line = strtok_r(buf, "\n", &save); line != NULL;
             line = strtok_r(NULL, "\n", &save)) {
            char *tok[8], *tsave = NULL;
            unsigned int n = 0;
            for (char *t = strtok_r(line, " \t", &tsave); t != NULL && n < 8;
                 t = strtok_r(NULL, " \t", &tsave))
                tok[n++] = t;
            if (n > 0 && tok[0][0] != '#')
                parse_entry(st, tok, n);
        }
        free(buf);
    }
    close(fd);
}

nvmlReturn_t state_lock(struct sim_state *st, int *lock_fd)
{
    char path[PATH_MAX];
    int fd;

    state_path(path, sizeof(path), "");
    /* World-writable, so that unprivileged readers can use up counted faults too. */
    if (mkdir(path, 0777) == 0)
        chmod(path, 0777);
    state_path(path, sizeof(path), "lock");
    fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "nvml-sim: cannot open %s: %s\n", path, strerror(errno));
        return NVML_ERROR_UNKNOWN;
    }
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            close(fd);
            return NVML_ERROR_UNKNOWN;
        }
    }
    state_load(st);
    *lock_fd = fd;
    return NVML_SUCCESS;
}

void state_unlock(int lock_fd)
{
    close(lock_fd); /* releases the flock */
}

static void write_gpu(FILE *f, unsigned int s, const struct sim_gpu_state *g)
{
    if (g->persistence)
        fprintf(f, "%u persistence\n", s);
    if (g->power_limit_mw)
        fprintf(f, "%u power_limit_mw %u\n", s, g->power_limit_mw);
    if (g->app_mem_mhz)
        fprintf(f, "%u app_clocks %u %u\n", s, g->app_mem_mhz, g->app_gfx_mhz);
    if (g->gpu_lock_max)
        fprintf(f, "%u gpu_locked_clocks %u %u\n", s, g->gpu_lock_min, g->gpu_lock_max);
    if (g->mem_lock_max)
        fprintf(f, "%u mem_locked_clocks %u %u\n", s, g->mem_lock_min, g->mem_lock_max);
    if (g->compute_mode)
        fprintf(f, "%u compute_mode %u\n", s, g->compute_mode);
    if (g->absent)
        fprintf(f, "%u absent\n", s);
    if (g->lost)
        fprintf(f, "%u lost\n", s);
    for (unsigned int l = 0; l < SIM_MAX_LINKS; l++) {
        if (g->nvlink_down & (1ULL << l))
            fprintf(f, "%u nvlink_down %u\n", s, l);
        for (unsigned int c = 0; c < NVML_NVLINK_ERROR_COUNT; c++)
            if (g->nvlink_errors[l][c])
                fprintf(f, "%u nvlink_errors %u %u %llu\n", s, l, c, g->nvlink_errors[l][c]);
    }
    for (unsigned int ct = 0; ct < 2; ct++)
        for (unsigned int et = 0; et < 2; et++)
            if (g->ecc[ct][et])
                fprintf(f, "%u ecc %u %u %llu\n", s, ct, et, g->ecc[ct][et]);
    for (unsigned int c = 0; c < NVML_PAGE_RETIREMENT_CAUSE_COUNT; c++)
        if (g->retired_pages[c])
            fprintf(f, "%u retired_pages %u %u\n", s, c, g->retired_pages[c]);
    if (g->retired_pending)
        fprintf(f, "%u retired_pending\n", s);
    if (g->remapped[0] || g->remapped[1] || g->remapped[2] || g->remapped[3])
        fprintf(f, "%u remapped_rows %u %u %u %u\n", s, g->remapped[0], g->remapped[1],
                g->remapped[2], g->remapped[3]);
    if (g->has_throttle)
        fprintf(f, "%u throttle 0x%llx\n", s, g->throttle);
    if (g->has_temp)
        fprintf(f, "%u temperature %u\n", s, g->temp_c);
    if (g->has_power)
        fprintf(f, "%u power_usage_mw %u\n", s, g->power_mw);
    if (g->has_pcie)
        fprintf(f, "%u pcie_link %u %u\n", s, g->pcie_gen, g->pcie_width);
    if (g->pcie_replays)
        fprintf(f, "%u pcie_replays %u\n", s, g->pcie_replays);
    if (g->heatsink_milli)
        fprintf(f, "%u heatsink_milli %u\n", s, g->heatsink_milli);
    if (g->load_pct)
        fprintf(f, "%u load %u\n", s, g->load_pct);
    for (unsigned int i = 0; i < g->nfails; i++)
        fprintf(f, "%u fail %s %d %d %d\n", s, g->fails[i].func, (int)g->fails[i].error,
                g->fails[i].times, g->fails[i].after);
}

nvmlReturn_t state_commit(int lock_fd, const struct sim_state *st)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    FILE *f = NULL;
    bool ok;
    int fd;

    state_path(tmp, sizeof(tmp), "state.tmp");
    state_path(path, sizeof(path), "state");
    unlink(tmp); /* a leftover of a crashed writer may belong to another user */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0 && fchmod(fd, 0644) == 0)
        f = fdopen(fd, "w");
    ok = f != NULL;
    if (ok) {
        fputs("# nvml-sim runtime state: SLOT KEY VALUES... (see README.md)\n", f);
        for (unsigned int s = 0; s < SIM_MAX_GPUS; s++)
            write_gpu(f, s, &st->gpu[s]);
        if (st->node.has_psu_ohm)
            fprintf(f, "node psu_ohm_uohm %u\n", st->node.psu_uohm);
        if (st->node.has_psu_voltage)
            fprintf(f, "node psu_voltage_mv %u\n", st->node.psu_voltage_mv);
        ok = fclose(f) == 0 && rename(tmp, path) == 0;
    } else if (fd >= 0) {
        close(fd);
    }
    if (!ok)
        fprintf(stderr, "nvml-sim: cannot write %s: %s\n", path, strerror(errno));
    state_unlock(lock_fd);
    return ok ? NVML_SUCCESS : NVML_ERROR_UNKNOWN;
}
