/*
 * Internal interfaces of the NVML simulator: the hardware profile (immutable while NVML is
 * initialised), the runtime state shared between processes, and the guard every device entry
 * point goes through.
 */
#ifndef NVML_SIM_SIM_H
#define NVML_SIM_SIM_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "nvml_types.h"

/* Fixed capacities keep the profile and the state plain structs, copied and reset at will. */
#define SIM_MAX_GPUS 16
#define SIM_MAX_SWITCHES 8
#define SIM_MAX_MODELS 8
#define SIM_MAX_LINKS 18 /* Hopper has the most NVLinks per GPU */
#define SIM_MAX_MEM_CLOCKS 4
#define SIM_MAX_GFX_CLOCKS 256
#define SIM_MAX_FAILS 8
#define SIM_FUNC_LEN 64

/* ---- hardware profile (profile.c, arch.c) ---- */

struct sim_arch {
    const char *name;
    nvmlDeviceArchitecture_t nvml_arch;
    unsigned int nvlink_version; /* nvmlNvlinkVersion_t, an enum, not the marketing number */
    bool gpu_locked_clocks;
    bool mem_locked_clocks;
    bool page_retirement;
    bool row_remapping;
};

const struct sim_arch *arch_find(const char *name);

struct sim_pci {
    unsigned int domain, bus, device, function;
    unsigned int device_id;    /* NVML layout: device << 16 | vendor */
    unsigned int subsystem_id; /* NVML layout: subsystem device << 16 | subsystem vendor */
};

struct sim_clock_table {
    unsigned int mem_mhz;
    unsigned int ngfx;
    unsigned int gfx_mhz[SIM_MAX_GFX_CLOCKS]; /* descending, as NVML lists them */
};

struct sim_model {
    char id[32];
    char name[96];
    nvmlBrandType_t brand;
    const struct sim_arch *arch;
    int cc_major, cc_minor;
    unsigned int device_id, subsystem_id;
    unsigned int mem_total_mib, mem_reserved_mib;
    bool ecc;
    char vbios[32];
    char part_number[80]; /* empty: not readable on this board */
    unsigned int power_min_mw, power_max_mw, power_default_mw;
    unsigned int nclock_tables;
    struct sim_clock_table clocks[SIM_MAX_MEM_CLOCKS];
    unsigned int gfx_min_mhz, gfx_max_mhz, mem_min_mhz, mem_max_mhz; /* over all tables */
    unsigned int default_app_mem_mhz, default_app_gfx_mhz;
    unsigned int max_video_mhz;
    unsigned int temp_shutdown, temp_slowdown, temp_gpu_max, temp_mem_max; /* 0: no sensor */
    unsigned int fan_speed; /* percent; 0: passively cooled, no fan */
    unsigned int pcie_max_gen, pcie_max_width;
    unsigned int nvlinks;
    unsigned int thermal_mc_per_w; /* temperature rise per watt above idle draw, milli-C/W */
};

enum sim_peer_kind { PEER_NONE, PEER_GPU, PEER_SWITCH };

struct sim_link {
    enum sim_peer_kind kind;
    unsigned int peer;      /* GPU slot or NVSwitch index */
    unsigned int peer_link; /* the link number at the peer GPU */
};

struct sim_gpu {
    const struct sim_model *model;
    struct sim_pci pci;
    char uuid[96];
    char serial[32];
    unsigned int idle_temp_c;
    unsigned int idle_power_mw;
    unsigned int numa_node;
    char pcie_switch[32]; /* GPUs behind the same PCIe switch share a label; empty: none */
    struct sim_link links[SIM_MAX_LINKS];
    bool empty; /* card pulled (hardware.c): not enumerated, like an `absent` fault */
};

struct sim_profile {
    char path[PATH_MAX];
    char driver_version[80];
    unsigned int cuda_driver_version;
    /* The node's 12 V rail (all zero: none). Only the nvml-sim tool models it; the library checks
       the values so that a typo fails at nvmlInit like any other. */
    unsigned int rail_no_load_mv, rail_uohm, rail_base_mw, rail_drop_mv;
    unsigned int nmodels, ngpus, nswitches;
    struct sim_model models[SIM_MAX_MODELS];
    struct sim_gpu gpus[SIM_MAX_GPUS]; /* in PCI bus order, like NVML's enumeration */
    struct sim_pci switches[SIM_MAX_SWITCHES];
};

/* Finds the configured profile and parses it; NVML_ERROR_DRIVER_NOT_LOADED when none is set. */
nvmlReturn_t profile_load(struct sim_profile *p);
const struct sim_clock_table *model_clock_table(const struct sim_model *m, unsigned int mem_mhz);
bool model_clock_supported(const struct sim_model *m, unsigned int mem_mhz, unsigned int gfx_mhz);
/* Applies the installed hardware changes ($NVML_SIM_HARDWARE_DIR/installed) to a parsed profile:
   swapped cards, empty slots. NVML_ERROR_UNKNOWN when that file does not parse. */
nvmlReturn_t hardware_load(struct sim_profile *p);

/* ---- runtime state shared between processes (state.c) ---- */

struct sim_fail {
    char func[SIM_FUNC_LEN]; /* entry point name without its _vN suffix */
    nvmlReturn_t error;
    int times; /* < 0: every call */
    int after; /* calls that still succeed before the fault bites */
};

/* Zero means "boot default" for every field, so a missing state file is a fresh boot. */
struct sim_gpu_state {
    /* settings made through NVML */
    bool persistence;
    unsigned int power_limit_mw;
    unsigned int app_mem_mhz, app_gfx_mhz;
    unsigned int gpu_lock_min, gpu_lock_max;
    unsigned int mem_lock_min, mem_lock_max;
    unsigned int compute_mode;
    /* faults injected with the nvml-sim tool */
    bool absent, lost;
    unsigned long long nvlink_down; /* bit per link */
    unsigned long long nvlink_errors[SIM_MAX_LINKS][NVML_NVLINK_ERROR_COUNT];
    unsigned long long ecc[2][2]; /* [counter type][error type] */
    unsigned int retired_pages[NVML_PAGE_RETIREMENT_CAUSE_COUNT];
    bool retired_pending;
    unsigned int remapped[4]; /* correctable, uncorrectable, pending, failure */
    bool has_throttle, has_temp, has_power, has_pcie;
    unsigned long long throttle;
    unsigned int temp_c, power_mw, pcie_gen, pcie_width;
    unsigned int pcie_replays;
    unsigned int heatsink_milli; /* thermal coefficient multiplier x 1000; 0: healthy (1.0) */
    /* the workload the nvml-sim tool runs on it */
    unsigned int load_pct;
    unsigned int nfails;
    struct sim_fail fails[SIM_MAX_FAILS];
};

/* Node-level faults ("node KEY VALUE" lines); only the tool reads them, the library keeps them. */
struct sim_node_state {
    bool has_psu_ohm, has_psu_voltage;
    unsigned int psu_uohm, psu_voltage_mv;
};

struct sim_state {
    struct sim_gpu_state gpu[SIM_MAX_GPUS];
    struct sim_node_state node;
};

/* Reads the state without locking: writers replace the file atomically. */
void state_load(struct sim_state *st);
/* Takes the cross-process lock and rereads the state under it, for a read-modify-write. */
nvmlReturn_t state_lock(struct sim_state *st, int *lock_fd);
/* Writes the state atomically and releases the lock. */
nvmlReturn_t state_commit(int lock_fd, const struct sim_state *st);
void state_unlock(int lock_fd);

/* ---- the library's session and the device guard (device.c) ---- */

extern struct sim_profile g_profile;

/* Everything a device entry point needs, read fresh for this one call. */
struct dev_ctx {
    unsigned int slot;
    const struct sim_gpu *gpu;
    const struct sim_model *model;
    struct sim_state st;
    struct sim_gpu_state *gs; /* &st.gpu[slot] */
};

/* nvmlInit and nvmlShutdown: a reference count; the first init loads the profile. */
nvmlReturn_t sim_session_open(void);
nvmlReturn_t sim_session_close(void);
bool sim_initialized(void);

/* Loads the state for a call that takes no handle; UNINITIALIZED before nvmlInit. */
nvmlReturn_t sim_enter(struct sim_state *st);
/* Checks init, the handle, a lost or absent GPU and injected failures of `func`. */
nvmlReturn_t dev_begin(struct dev_ctx *c, nvmlDevice_t device, const char *func);
/* The injected failure of `func` on `slot`, if any, using up one use of a counted one. */
nvmlReturn_t dev_injected(struct sim_state *st, unsigned int slot, const char *func);
/* Setters need root, like the real driver. */
nvmlReturn_t dev_require_root(void);

nvmlDevice_t dev_handle(unsigned int slot);
unsigned int dev_present_count(const struct sim_state *st);
/* Not enumerated: an `absent` fault, or an empty slot. */
bool dev_absent(const struct sim_state *st, unsigned int slot);
/* NVML's index of a slot (absent GPUs are skipped), or -1 for an absent one. */
int dev_visible_index(const struct sim_state *st, unsigned int slot);
bool dev_usable(const struct sim_state *st, unsigned int slot);

/* ---- readings more than one area of the API needs ---- */

unsigned int power_limit_current(const struct dev_ctx *c);
unsigned int power_usage_current(const struct dev_ctx *c);
unsigned int temperature_current(const struct dev_ctx *c);
bool nvlink_active(const struct sim_state *st, unsigned int slot, unsigned int link);

/* ---- helpers (util.c) ---- */

/* Output arguments: NULL is NVML_ERROR_INVALID_ARGUMENT. */
nvmlReturn_t put_uint(unsigned int *out, unsigned int value);
nvmlReturn_t put_ull(unsigned long long *out, unsigned long long value);
nvmlReturn_t copy_string(char *dst, unsigned int len, const char *src);
void pci_info_fill(nvmlPciInfo_t *out, const struct sim_pci *pci);
bool pci_parse_bus_id(const char *text, unsigned int *domain, unsigned int *bus,
                      unsigned int *device, unsigned int *function);
bool parse_uint(const char *text, unsigned int *out);
bool parse_milli(const char *text, unsigned int scale, unsigned int *out);

#endif
