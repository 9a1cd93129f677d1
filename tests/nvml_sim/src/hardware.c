/*
 * Hardware changes made while the machine was off: `nvml-sim swap` queues them, `nvml-sim reset`
 * (a boot) installs them into $NVML_SIM_HARDWARE_DIR/installed, and nvmlInit applies them to the
 * parsed profile here. A swapped card is another [model] of the profile with its own serial and
 * UUID in the slot's place (bus id, NUMA node, idle readings and NVLink wiring stay the slot's);
 * an empty slot is not enumerated. The format is described in ../README.md; errors are reported
 * like the profile's, "file:line: problem" on stderr.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sim.h"

#define DEFAULT_HARDWARE_DIR "/var/lib/nvml-sim"

struct change {
    bool set, empty;
    const struct sim_model *model;
    char serial[32], uuid[96];
};

static bool hw_fail(const char *path, unsigned int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "nvml-sim: %s:%u: ", path, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return false;
}

/* What the tool writes: 13 decimal digits. */
static bool valid_serial(const char *s)
{
    size_t n = strlen(s);
    return n == 13 && strspn(s, "0123456789") == n;
}

/* GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, lowercase hex. */
static bool valid_uuid(const char *s)
{
    static const char pattern[] = "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    if (strlen(s) != sizeof(pattern) - 1)
        return false;
    for (size_t i = 0; pattern[i] != '\0'; i++) {
        bool hex = isdigit((unsigned char)s[i]) || (s[i] >= 'a' && s[i] <= 'f');
        if (pattern[i] == 'x' ? !hex : s[i] != pattern[i])
            return false;
    }
    return true;
}

/* Whether the file's `profile PATH` names the profile loaded: changes made to other hardware
   (another NVML_SIM_PROFILE) are not this machine's. */
static bool same_profile(const char *recorded, const char *loaded)
{
    struct stat a, b;
    return stat(recorded, &a) == 0 && stat(loaded, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

/* One "SLOT card MODEL SERIAL UUID" or "SLOT empty" line into changes[SLOT]. */
static bool parse_change(const struct sim_profile *p, struct change *changes, char **w,
                         unsigned int n, const char *path, unsigned int line)
{
    unsigned int slot;
    struct change *c;
    if (!parse_uint(w[0], &slot) || slot >= p->ngpus)
        return hw_fail(path, line, "no GPU slot '%s' (the profile has %u)", w[0], p->ngpus);
    c = &changes[slot];
    if (c->set)
        return hw_fail(path, line, "slot %u given twice", slot);
    c->set = true;
    if (n == 2 && strcmp(w[1], "empty") == 0) {
        c->empty = true;
        return true;
    }
    if (n != 5 || strcmp(w[1], "card") != 0)
        return hw_fail(path, line, "wants 'SLOT card MODEL SERIAL UUID' or 'SLOT empty'");
    for (unsigned int m = 0; m < p->nmodels; m++)
        if (strcmp(p->models[m].id, w[2]) == 0)
            c->model = &p->models[m];
    if (c->model == NULL)
        return hw_fail(path, line, "no [model %s] in the profile", w[2]);
    if (!valid_serial(w[3]))
        return hw_fail(path, line, "serial '%s' is not 13 digits", w[3]);
    if (!valid_uuid(w[4]))
        return hw_fail(path, line, "UUID '%s' is not GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
                       w[4]);
    strcpy(c->serial, w[3]);
    strcpy(c->uuid, w[4]);
    return true;
}

/* The PATH of a "profile PATH" line (the rest of the line: a path may hold spaces), or NULL. */
static char *profile_line(char *text)
{
    size_t end;
    text += strspn(text, " \t");
    if (strncmp(text, "profile", 7) != 0 || (text[7] != ' ' && text[7] != '\t'))
        return NULL;
    text += 7 + strspn(text + 7, " \t");
    for (end = strlen(text); end > 0 && isspace((unsigned char)text[end - 1]); end--)
        text[end - 1] = '\0';
    return *text != '\0' ? text : NULL;
}

/* Reads the file into changes[]; *mine is false when it belongs to another profile. */
static bool parse_installed(FILE *f, const struct sim_profile *p, struct change *changes,
                            const char *path, bool *mine)
{
    char buf[PATH_MAX + 64], *w[6], *save, *owner;
    unsigned int line = 0, n;
    bool have_profile = false;
    while (fgets(buf, sizeof(buf), f) != NULL) {
        line++;
        if (strchr(buf, '\n') == NULL && !feof(f))
            return hw_fail(path, line, "line too long");
        buf[strcspn(buf, "#\n")] = '\0';
        if (!have_profile && buf[strspn(buf, " \t\r")] != '\0') {
            if ((owner = profile_line(buf)) == NULL)
                return hw_fail(path, line, "the first line must be 'profile PATH'");
            have_profile = true;
            *mine = same_profile(owner, p->path);
            if (!*mine)
                return true;
            continue;
        }
        n = 0;
        save = NULL;
        for (char *t = strtok_r(buf, " \t\r", &save); t != NULL && n < 6;
             t = strtok_r(NULL, " \t\r", &save))
            w[n++] = t;
        if (n > 0 && !parse_change(p, changes, w, n, path, line))
            return false;
    }
    return have_profile || hw_fail(path, line + 1, "no 'profile PATH' line");
}

/* A GPU-to-GPU link the new card does not have is no link at either end. */
static void unwire_missing_links(struct sim_profile *p, unsigned int slot)
{
    struct sim_gpu *g = &p->gpus[slot];
    for (unsigned int l = g->model->nvlinks; l < SIM_MAX_LINKS; l++) {
        struct sim_link *k = &g->links[l];
        if (k->kind == PEER_GPU)
            p->gpus[k->peer].links[k->peer_link].kind = PEER_NONE;
        k->kind = PEER_NONE;
    }
}

nvmlReturn_t hardware_load(struct sim_profile *p)
{
    struct change changes[SIM_MAX_GPUS] = {0};
    char path[PATH_MAX];
    const char *dir = getenv("NVML_SIM_HARDWARE_DIR");
    bool ok, mine = false;
    FILE *f;

    snprintf(path, sizeof(path), "%s/installed",
             dir != NULL && *dir != '\0' ? dir : DEFAULT_HARDWARE_DIR);
    f = fopen(path, "r");
    if (f == NULL) {
        if (errno == ENOENT)
            return NVML_SUCCESS; /* the hardware the profile describes */
        fprintf(stderr, "nvml-sim: cannot open %s: %s\n", path, strerror(errno));
        return NVML_ERROR_DRIVER_NOT_LOADED;
    }
    ok = parse_installed(f, p, changes, path, &mine);
    fclose(f);
    if (!ok)
        return NVML_ERROR_UNKNOWN;
    for (unsigned int s = 0; mine && s < p->ngpus; s++) {
        struct sim_gpu *g = &p->gpus[s];
        const struct change *c = &changes[s];
        if (!c->set)
            continue;
        g->empty = c->empty;
        if (c->empty)
            continue;
        g->model = c->model;
        g->pci.device_id = c->model->device_id;
        g->pci.subsystem_id = c->model->subsystem_id;
        strcpy(g->serial, c->serial);
        strcpy(g->uuid, c->uuid);
        unwire_missing_links(p, s);
    }
    /* Handle lookups by UUID must find one GPU. */
    for (unsigned int s = 0; mine && s < p->ngpus; s++) {
        for (unsigned int t = 0; t < s; t++) {
            if (!p->gpus[s].empty && !p->gpus[t].empty &&
                strcmp(p->gpus[s].uuid, p->gpus[t].uuid) == 0) {
                fprintf(stderr, "nvml-sim: %s: slots %u and %u have the same UUID %s\n", path,
                        t, s, p->gpus[s].uuid);
                return NVML_ERROR_UNKNOWN;
            }
        }
    }
    return NVML_SUCCESS;
}
