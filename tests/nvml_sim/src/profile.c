/*
 * Hardware profiles: which profile is configured, and parsing it. The format is described in
 * ../README.md. Parsing is strict and reports "file:line: problem" on stderr, because a typo in
 * a profile would otherwise surface as a puzzling NVML value far away in some test.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define DEFAULT_PROFILE_FILE "/etc/nvml-sim/profile"
#define DEFAULT_PROFILE_DIR "/usr/local/share/nvml-sim/profiles"
/* 0.1 C/W: a 400 W datacenter GPU that idles at ~50 W and ~35 C runs at ~70 C under full load. */
#define DEFAULT_THERMAL_MC_PER_W 100

enum section { SEC_TOP, SEC_MODEL, SEC_GPU, SEC_NVSWITCH, SEC_PCI };

struct parser {
    struct sim_profile *p;
    unsigned int line;
    enum section section;
    char *base; /* the struct the current section fills */
    unsigned long long seen; /* bit per key of the current section */
};

enum kind {
    K_STR,   /* the rest of the line */
    K_UINTS, /* `count` numbers into consecutive unsigned ints, times `scale` */
    K_BOOL,  /* on / off */
    K_BUS,   /* a PCI bus id into a struct sim_pci */
    K_CUSTOM,
};

struct key {
    enum section section;
    const char *name;
    enum kind kind;
    size_t offset;
    unsigned int size; /* K_STR: buffer size; K_UINTS: count */
    unsigned int scale;
    bool required, repeatable;
    bool (*custom)(struct parser *ps, char *value);
};

static bool fail(const struct parser *ps, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "nvml-sim: %s:%u: ", ps->p->path, ps->line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return false;
}

/* Splits `value` in place into at most `max` whitespace-separated words. */
static unsigned int split(char *value, char **words, unsigned int max)
{
    unsigned int n = 0;
    char *save = NULL;
    for (char *w = strtok_r(value, " \t", &save); w != NULL; w = strtok_r(NULL, " \t", &save)) {
        if (n == max)
            return max + 1;
        words[n++] = w;
    }
    return n;
}

static bool k_architecture(struct parser *ps, char *value)
{
    struct sim_model *m = (struct sim_model *)ps->base;
    m->arch = arch_find(value);
    return m->arch != NULL || fail(ps, "unknown architecture '%s'", value);
}

static bool k_brand(struct parser *ps, char *value)
{
    static const struct {
        const char *name;
        nvmlBrandType_t brand;
    } brands[] = {{"quadro", 1}, {"tesla", 2}, {"geforce", 5}, {"titan", 6}, {"nvidia", 14}};
    for (size_t i = 0; i < sizeof(brands) / sizeof(brands[0]); i++) {
        if (strcmp(brands[i].name, value) == 0) {
            ((struct sim_model *)ps->base)->brand = brands[i].brand;
            return true;
        }
    }
    return fail(ps, "unknown brand '%s'", value);
}

static bool k_compute_capability(struct parser *ps, char *value)
{
    struct sim_model *m = (struct sim_model *)ps->base;
    unsigned int tenths;
    if (!parse_milli(value, 10, &tenths))
        return fail(ps, "compute_capability wants MAJOR.MINOR, got '%s'", value);
    m->cc_major = (int)(tenths / 10);
    m->cc_minor = (int)(tenths % 10);
    return true;
}

/* clocks MEM GFX_MAX GFX_MIN STEP: the graphics clocks NVML lists for memory clock MEM, from
   GFX_MAX down to GFX_MIN; STEP may be fractional (Volta steps by 7.5 MHz, listed truncated). */
static bool k_clocks(struct parser *ps, char *value)
{
    struct sim_model *m = (struct sim_model *)ps->base;
    char *w[4];
    unsigned int mem, max, min, step10;
    if (split(value, w, 4) != 4 || !parse_uint(w[0], &mem) || !parse_uint(w[1], &max) ||
        !parse_uint(w[2], &min) || !parse_milli(w[3], 10, &step10) || step10 == 0 || min > max)
        return fail(ps, "clocks wants MEM_MHZ GFX_MAX GFX_MIN STEP");
    if (m->nclock_tables == SIM_MAX_MEM_CLOCKS)
        return fail(ps, "more than %d memory clocks", SIM_MAX_MEM_CLOCKS);
    struct sim_clock_table *t = &m->clocks[m->nclock_tables++];
    t->mem_mhz = mem;
    for (unsigned long long v10 = max * 10ULL; v10 >= min * 10ULL; v10 -= step10) {
        if (t->ngfx == SIM_MAX_GFX_CLOCKS)
            return fail(ps, "more than %d graphics clocks", SIM_MAX_GFX_CLOCKS);
        t->gfx_mhz[t->ngfx++] = (unsigned int)(v10 / 10);
        if (v10 < step10)
            break;
    }
    return true;
}

static bool k_model(struct parser *ps, char *value)
{
    for (unsigned int i = 0; i < ps->p->nmodels; i++) {
        if (strcmp(ps->p->models[i].id, value) == 0) {
            ((struct sim_gpu *)ps->base)->model = &ps->p->models[i];
            return true;
        }
    }
    return fail(ps, "unknown model '%s' (a [model] section must come first)", value);
}

static bool parse_range(const char *text, unsigned int *first, unsigned int *count)
{
    char buf[32], *dash;
    unsigned int last;
    if (strlen(text) >= sizeof(buf))
        return false;
    strcpy(buf, text);
    dash = strchr(buf, '-');
    if (dash != NULL)
        *dash = '\0';
    if (!parse_uint(buf, first))
        return false;
    last = *first;
    if (dash != NULL && (!parse_uint(dash + 1, &last) || last < *first))
        return false;
    *count = last - *first + 1;
    return true;
}

/* link LINKS gpu SLOT PEER_LINKS  |  link LINKS nvswitch INDEX   (LINKS: N or N-M) */
static bool k_link(struct parser *ps, char *value)
{
    struct sim_gpu *g = (struct sim_gpu *)ps->base;
    char *w[4];
    unsigned int n = split(value, w, 4), first, count, peer, peer_first = 0, peer_count;
    bool to_gpu = n == 4 && strcmp(w[1], "gpu") == 0;
    bool to_switch = n == 3 && strcmp(w[1], "nvswitch") == 0;
    if ((!to_gpu && !to_switch) || !parse_range(w[0], &first, &count) ||
        !parse_uint(w[2], &peer) || (to_gpu && !parse_range(w[3], &peer_first, &peer_count)))
        return fail(ps, "link wants 'LINKS gpu SLOT PEER_LINKS' or 'LINKS nvswitch INDEX'");
    if (to_gpu && peer_count != count)
        return fail(ps, "link ranges differ in length");
    if (first + count > SIM_MAX_LINKS || peer_first + count > SIM_MAX_LINKS)
        return fail(ps, "link number above %d", SIM_MAX_LINKS - 1);
    for (unsigned int i = 0; i < count; i++) {
        struct sim_link *l = &g->links[first + i];
        if (l->kind != PEER_NONE)
            return fail(ps, "link %u wired twice", first + i);
        l->kind = to_gpu ? PEER_GPU : PEER_SWITCH;
        l->peer = peer;
        l->peer_link = peer_first + i;
    }
    return true;
}

#define FIELD(type, field) offsetof(type, field), sizeof(((type *)0)->field)
/* Two levels so that TOP, MODEL, ... expand into (section, struct type) before use. */
#define STR_KEY(...) STR_KEY_(__VA_ARGS__)
#define STR_KEY_(sec, type, key, field, req) \
    {sec, key, K_STR, FIELD(type, field), 1, req, false, NULL}
#define NUM_KEY(...) NUM_KEY_(__VA_ARGS__)
#define NUM_KEY_(sec, type, key, field, count, scale, req) \
    {sec, key, K_UINTS, offsetof(type, field), count, scale, req, false, NULL}
#define CUSTOM_KEY(sec, key, fn, req, repeatable) {sec, key, K_CUSTOM, 0, 0, 1, req, repeatable, fn}
#define TOP SEC_TOP, struct sim_profile
#define MODEL SEC_MODEL, struct sim_model
#define GPU SEC_GPU, struct sim_gpu
#define SWITCH SEC_NVSWITCH, struct sim_pci

static const struct key keys[] = {
    STR_KEY(TOP, "driver_version", driver_version, true),
    NUM_KEY(TOP, "cuda_driver_version", cuda_driver_version, 1, 1, true),
    NUM_KEY(TOP, "rail_12v_no_load_v", rail_no_load_mv, 1, 1000, false),
    NUM_KEY(TOP, "rail_12v_ohm", rail_uohm, 1, 1000000, false),
    NUM_KEY(TOP, "rail_12v_base_w", rail_base_mw, 1, 1000, false),
    NUM_KEY(TOP, "rail_12v_drop_v", rail_drop_mv, 1, 1000, false),

    STR_KEY(MODEL, "name", name, true),
    CUSTOM_KEY(SEC_MODEL, "brand", k_brand, false, false),
    CUSTOM_KEY(SEC_MODEL, "architecture", k_architecture, true, false),
    CUSTOM_KEY(SEC_MODEL, "compute_capability", k_compute_capability, true, false),
    NUM_KEY(MODEL, "pci_device_id", device_id, 1, 1, true),
    NUM_KEY(MODEL, "pci_subsystem_id", subsystem_id, 1, 1, true),
    NUM_KEY(MODEL, "memory_mib", mem_total_mib, 2, 1, true),
    {SEC_MODEL, "ecc", K_BOOL, offsetof(struct sim_model, ecc), 0, 1, false, false, NULL},
    STR_KEY(MODEL, "vbios", vbios, true),
    STR_KEY(MODEL, "board_part_number", part_number, false),
    NUM_KEY(MODEL, "power_limit_w", power_min_mw, 3, 1000, true),
    CUSTOM_KEY(SEC_MODEL, "clocks", k_clocks, true, true),
    NUM_KEY(MODEL, "default_app_clocks", default_app_mem_mhz, 2, 1, true),
    NUM_KEY(MODEL, "max_video_clock", max_video_mhz, 1, 1, true),
    NUM_KEY(MODEL, "temp_shutdown", temp_shutdown, 1, 1, true),
    NUM_KEY(MODEL, "temp_slowdown", temp_slowdown, 1, 1, true),
    NUM_KEY(MODEL, "temp_gpu_max", temp_gpu_max, 1, 1, true),
    NUM_KEY(MODEL, "temp_mem_max", temp_mem_max, 1, 1, false),
    NUM_KEY(MODEL, "fan_speed", fan_speed, 1, 1, false),
    NUM_KEY(MODEL, "pcie", pcie_max_gen, 2, 1, true),
    NUM_KEY(MODEL, "nvlinks", nvlinks, 1, 1, false),
    NUM_KEY(MODEL, "thermal_c_per_w", thermal_mc_per_w, 1, 1000, false),

    CUSTOM_KEY(SEC_GPU, "model", k_model, true, false),
    {SEC_GPU, "bus_id", K_BUS, offsetof(struct sim_gpu, pci), 0, 1, true, false, NULL},
    STR_KEY(GPU, "uuid", uuid, true),
    STR_KEY(GPU, "serial", serial, true),
    NUM_KEY(GPU, "temperature", idle_temp_c, 1, 1, true),
    NUM_KEY(GPU, "power_usage_w", idle_power_mw, 1, 1000, true),
    NUM_KEY(GPU, "numa_node", numa_node, 1, 1, false),
    STR_KEY(GPU, "pcie_switch", pcie_switch, false),
    CUSTOM_KEY(SEC_GPU, "link", k_link, false, true),

    {SEC_NVSWITCH, "bus_id", K_BUS, 0, 0, 1, true, false, NULL},
    NUM_KEY(SWITCH, "pci_device_id", device_id, 1, 1, true),
    NUM_KEY(SWITCH, "pci_subsystem_id", subsystem_id, 1, 1, true),
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))
static_assert(NKEYS <= 64, "one bit per key in parser.seen");

/* K_UINTS with a count above one fills consecutive fields. */
static_assert(offsetof(struct sim_model, mem_reserved_mib) ==
                  offsetof(struct sim_model, mem_total_mib) + sizeof(unsigned int),
              "memory_mib fields");
static_assert(offsetof(struct sim_model, power_default_mw) ==
                  offsetof(struct sim_model, power_min_mw) + 2 * sizeof(unsigned int),
              "power_limit_w fields");
static_assert(offsetof(struct sim_model, default_app_gfx_mhz) ==
                  offsetof(struct sim_model, default_app_mem_mhz) + sizeof(unsigned int),
              "default_app_clocks fields");
static_assert(offsetof(struct sim_model, pcie_max_width) ==
                  offsetof(struct sim_model, pcie_max_gen) + sizeof(unsigned int),
              "pcie fields");

static bool set_value(struct parser *ps, const struct key *k, char *value)
{
    char *field = ps->base + k->offset;
    switch (k->kind) {
    case K_STR:
        if (strlen(value) >= k->size)
            return fail(ps, "%s is longer than %u characters", k->name, k->size - 1);
        strcpy(field, value);
        return true;
    case K_UINTS: {
        char *w[3];
        unsigned int *out = (unsigned int *)(void *)field;
        if (split(value, w, 3) != k->size)
            return fail(ps, "%s wants %u number(s)", k->name, k->size);
        for (unsigned int i = 0; i < k->size; i++) {
            bool ok = k->scale == 1 ? parse_uint(w[i], &out[i])
                                    : parse_milli(w[i], k->scale, &out[i]);
            if (!ok)
                return fail(ps, "%s: bad number '%s'", k->name, w[i]);
        }
        return true;
    }
    case K_BOOL:
        if (strcmp(value, "on") != 0 && strcmp(value, "off") != 0)
            return fail(ps, "%s wants on or off", k->name);
        *(bool *)(void *)field = strcmp(value, "on") == 0;
        return true;
    case K_BUS: {
        struct sim_pci *pci = (struct sim_pci *)(void *)field;
        if (!pci_parse_bus_id(value, &pci->domain, &pci->bus, &pci->device, &pci->function))
            return fail(ps, "bad PCI bus id '%s'", value);
        return true;
    }
    case K_CUSTOM:
        return k->custom(ps, value);
    }
    return false;
}

#define RAIL_PREFIX "rail_12v_"

static bool end_section(struct parser *ps)
{
    unsigned int rail_keys = 0, rail_seen = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].section != ps->section)
            continue;
        if (keys[i].required && !(ps->seen & (1ULL << i)))
            return fail(ps, "section before this line lacks '%s'", keys[i].name);
        if (strncmp(keys[i].name, RAIL_PREFIX, strlen(RAIL_PREFIX)) == 0) {
            rail_keys++;
            rail_seen += (ps->seen & (1ULL << i)) != 0;
        }
    }
    /* Half a rail cannot be modelled: all of its keys or none. */
    if (rail_seen != 0 && rail_seen != rail_keys)
        return fail(ps, "the " RAIL_PREFIX "* keys come together: all %u or none", rail_keys);
    if (rail_seen != 0 && ps->p->rail_drop_mv >= ps->p->rail_no_load_mv)
        return fail(ps, RAIL_PREFIX "drop_v must be below " RAIL_PREFIX "no_load_v");
    return true;
}

static bool start_section(struct parser *ps, char *header)
{
    struct sim_profile *p = ps->p;
    char *w[3];
    unsigned int n = split(header, w, 2);
    if (!end_section(ps))
        return false;
    ps->seen = 0;
    if (n == 2 && strcmp(w[0], "model") == 0) {
        if (p->nmodels == SIM_MAX_MODELS)
            return fail(ps, "more than %d models", SIM_MAX_MODELS);
        struct sim_model *m = &p->models[p->nmodels++];
        if (strlen(w[1]) >= sizeof(m->id))
            return fail(ps, "model name too long");
        strcpy(m->id, w[1]);
        m->brand = 14; /* NVML_BRAND_NVIDIA, what current datacenter GPUs report */
        m->thermal_mc_per_w = DEFAULT_THERMAL_MC_PER_W;
        ps->section = SEC_MODEL;
        ps->base = (char *)m;
    } else if (n == 1 && strcmp(w[0], "gpu") == 0) {
        if (p->ngpus == SIM_MAX_GPUS)
            return fail(ps, "more than %d GPUs", SIM_MAX_GPUS);
        ps->section = SEC_GPU;
        ps->base = (char *)&p->gpus[p->ngpus++];
    } else if (n == 1 && strcmp(w[0], "nvswitch") == 0) {
        if (p->nswitches == SIM_MAX_SWITCHES)
            return fail(ps, "more than %d NVSwitches", SIM_MAX_SWITCHES);
        ps->section = SEC_NVSWITCH;
        ps->base = (char *)&p->switches[p->nswitches++];
    } else if (n == 1 && strcmp(w[0], "pci") == 0) {
        ps->section = SEC_PCI; /* other PCI devices: only nvml-sim's sysfs writer reads them */
        ps->base = NULL;
    } else {
        return fail(ps, "unknown section [%s]", header);
    }
    return true;
}

static char *trim(char *s)
{
    char *end;
    while (isspace((unsigned char)*s))
        s++;
    end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

static bool parse_line(struct parser *ps, char *line)
{
    char *hash = strchr(line, '#'), *key, *value;
    if (hash != NULL)
        *hash = '\0';
    line = trim(line);
    if (*line == '\0')
        return true;
    if (*line == '[') {
        char *close = strchr(line, ']');
        if (close == NULL || close[1] != '\0')
            return fail(ps, "bad section header");
        *close = '\0';
        return start_section(ps, line + 1);
    }
    if (ps->section == SEC_PCI)
        return true;
    key = line;
    value = line + strcspn(line, " \t");
    if (*value != '\0')
        *value++ = '\0';
    value = trim(value);
    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].section != ps->section || strcmp(keys[i].name, key) != 0)
            continue;
        if ((ps->seen & (1ULL << i)) && !keys[i].repeatable)
            return fail(ps, "'%s' given twice", key);
        ps->seen |= 1ULL << i;
        if (*value == '\0')
            return fail(ps, "'%s' needs a value", key);
        return set_value(ps, &keys[i], value);
    }
    return fail(ps, "unknown key '%s' here", key);
}

static int pci_cmp(const struct sim_pci *a, const struct sim_pci *b)
{
    unsigned int ka[] = {a->domain, a->bus, a->device, a->function};
    unsigned int kb[] = {b->domain, b->bus, b->device, b->function};
    for (int i = 0; i < 4; i++)
        if (ka[i] != kb[i])
            return ka[i] < kb[i] ? -1 : 1;
    return 0;
}

const struct sim_clock_table *model_clock_table(const struct sim_model *m, unsigned int mem_mhz)
{
    for (unsigned int t = 0; t < m->nclock_tables; t++)
        if (m->clocks[t].mem_mhz == mem_mhz)
            return &m->clocks[t];
    return NULL;
}

bool model_clock_supported(const struct sim_model *m, unsigned int mem_mhz, unsigned int gfx_mhz)
{
    const struct sim_clock_table *t = model_clock_table(m, mem_mhz);
    for (unsigned int i = 0; t != NULL && i < t->ngfx; i++)
        if (t->gfx_mhz[i] == gfx_mhz)
            return true;
    return false;
}

static void derive_clock_range(struct sim_model *m)
{
    m->gfx_min_mhz = m->mem_min_mhz = UINT_MAX;
    for (unsigned int i = 0; i < m->nclock_tables; i++) {
        const struct sim_clock_table *t = &m->clocks[i];
        if (t->mem_mhz < m->mem_min_mhz)
            m->mem_min_mhz = t->mem_mhz;
        if (t->mem_mhz > m->mem_max_mhz)
            m->mem_max_mhz = t->mem_mhz;
        if (t->gfx_mhz[t->ngfx - 1] < m->gfx_min_mhz)
            m->gfx_min_mhz = t->gfx_mhz[t->ngfx - 1];
        if (t->gfx_mhz[0] > m->gfx_max_mhz)
            m->gfx_max_mhz = t->gfx_mhz[0];
    }
}

/* Checks that need the whole file: references, wiring symmetry, NVML's enumeration order. */
static bool check_profile(struct parser *ps)
{
    struct sim_profile *p = ps->p;
    if (p->ngpus == 0)
        return fail(ps, "no [gpu] section");
    for (unsigned int m = 0; m < p->nmodels; m++) {
        struct sim_model *mo = &p->models[m];
        derive_clock_range(mo);
        if (mo->power_default_mw < mo->power_min_mw || mo->power_default_mw > mo->power_max_mw)
            return fail(ps, "model %s: default power limit outside its range", mo->id);
        if (!model_clock_supported(mo, mo->default_app_mem_mhz, mo->default_app_gfx_mhz))
            return fail(ps, "model %s: default_app_clocks not among its clocks", mo->id);
        if (mo->nvlinks > SIM_MAX_LINKS)
            return fail(ps, "model %s: more than %d NVLinks", mo->id, SIM_MAX_LINKS);
    }
    for (unsigned int s = 0; s < p->ngpus; s++) {
        struct sim_gpu *g = &p->gpus[s];
        g->pci.device_id = g->model->device_id;
        g->pci.subsystem_id = g->model->subsystem_id;
        if (s > 0 && pci_cmp(&p->gpus[s - 1].pci, &g->pci) >= 0)
            return fail(ps, "GPU %u: [gpu] sections must be in ascending bus id order", s);
        for (unsigned int l = 0; l < SIM_MAX_LINKS; l++) {
            const struct sim_link *k = &g->links[l];
            if (k->kind == PEER_NONE)
                continue;
            if (l >= g->model->nvlinks)
                return fail(ps, "GPU %u: link %u, but model has %u NVLinks", s, l,
                            g->model->nvlinks);
            if (k->kind == PEER_SWITCH && k->peer >= p->nswitches)
                return fail(ps, "GPU %u link %u: no NVSwitch %u", s, l, k->peer);
            if (k->kind == PEER_GPU &&
                (k->peer >= p->ngpus || k->peer == s ||
                 p->gpus[k->peer].links[k->peer_link].kind != PEER_GPU ||
                 p->gpus[k->peer].links[k->peer_link].peer != s ||
                 p->gpus[k->peer].links[k->peer_link].peer_link != l))
                return fail(ps, "GPU %u link %u: the peer's end is not wired back", s, l);
        }
    }
    return true;
}

static bool read_selection(char *out, size_t len)
{
    const char *sel = getenv("NVML_SIM_PROFILE");
    char line[PATH_MAX];
    if (sel == NULL || *sel == '\0') {
        const char *file = getenv("NVML_SIM_PROFILE_FILE");
        FILE *f = fopen(file != NULL && *file != '\0' ? file : DEFAULT_PROFILE_FILE, "r");
        if (f == NULL)
            return false;
        sel = fgets(line, sizeof(line), f) != NULL ? trim(line) : "";
        fclose(f);
        if (*sel == '\0')
            return false;
    }
    if (strchr(sel, '/') != NULL)
        return (size_t)snprintf(out, len, "%s", sel) < len;
    const char *dir = getenv("NVML_SIM_PROFILE_DIR");
    return (size_t)snprintf(out, len, "%s/%s.conf",
                            dir != NULL && *dir != '\0' ? dir : DEFAULT_PROFILE_DIR, sel) < len;
}

nvmlReturn_t profile_load(struct sim_profile *p)
{
    struct parser ps = {.p = p, .section = SEC_TOP, .base = (char *)p};
    char buf[512];
    FILE *f;
    bool ok = true;

    memset(p, 0, sizeof(*p));
    if (!read_selection(p->path, sizeof(p->path)))
        return NVML_ERROR_DRIVER_NOT_LOADED;
    f = fopen(p->path, "r");
    if (f == NULL) {
        fprintf(stderr, "nvml-sim: cannot open profile %s\n", p->path);
        return NVML_ERROR_DRIVER_NOT_LOADED;
    }
    while (ok && fgets(buf, sizeof(buf), f) != NULL) {
        ps.line++;
        if (strchr(buf, '\n') == NULL && !feof(f))
            ok = fail(&ps, "line too long");
        else
            ok = parse_line(&ps, buf);
    }
    fclose(f);
    ps.line++;
    ok = ok && end_section(&ps) && check_profile(&ps);
    return ok ? hardware_load(p) : NVML_ERROR_UNKNOWN;
}
