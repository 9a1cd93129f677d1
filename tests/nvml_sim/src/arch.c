/*
 * What each GPU architecture supports. These are properties of the silicon and the driver, not
 * of a board, so they live here rather than in profiles. Add a row to simulate another
 * architecture.
 */
#include <string.h>

#include "sim.h"

static const struct sim_arch arches[] = {
    /* Volta: locked GPU clocks yes, locked memory clocks no, ECC pages are retired. */
    {"volta", 5, 2 /* NVLink 2.0 */, true, false, true, false},
    /* Ampere and Hopper replace page retirement with row remapping. A100 reports enum 5
       (NVLink 3.1), H100 enum 6 (NVLink 4.0). */
    {"ampere", 7, 5, true, true, false, true},
    {"hopper", 9, 6, true, true, false, true},
};

const struct sim_arch *arch_find(const char *name)
{
    for (size_t i = 0; i < sizeof(arches) / sizeof(arches[0]); i++)
        if (strcmp(arches[i].name, name) == 0)
            return &arches[i];
    return NULL;
}
