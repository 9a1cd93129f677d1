/* Small helpers shared by the profile parser and the NVML entry points. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

nvmlReturn_t put_uint(unsigned int *out, unsigned int value)
{
    if (out == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *out = value;
    return NVML_SUCCESS;
}

nvmlReturn_t put_ull(unsigned long long *out, unsigned long long value)
{
    if (out == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *out = value;
    return NVML_SUCCESS;
}

nvmlReturn_t copy_string(char *dst, unsigned int len, const char *src)
{
    if (dst == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    size_t need = strlen(src) + 1;
    if (len < need)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(dst, src, need);
    return NVML_SUCCESS;
}

void pci_info_fill(nvmlPciInfo_t *out, const struct sim_pci *pci)
{
    memset(out, 0, sizeof(*out));
    out->domain = pci->domain;
    out->bus = pci->bus;
    out->device = pci->device;
    out->pciDeviceId = pci->device_id;
    out->pciSubSystemId = pci->subsystem_id;
    /* The parser bounds every field, so neither string can be truncated. */
    snprintf(out->busIdLegacy, sizeof(out->busIdLegacy), "%04X:%02X:%02X.%X",
             pci->domain & 0xffffU, pci->bus & 0xffU, pci->device & 0x1fU, pci->function & 7U);
    snprintf(out->busId, sizeof(out->busId), "%08X:%02X:%02X.%X", pci->domain, pci->bus & 0xffU,
             pci->device & 0x1fU, pci->function & 7U);
}

static bool parse_hex_field(const char **s, unsigned long *out)
{
    char *end;
    if (!isxdigit((unsigned char)**s))
        return false;
    *out = strtoul(*s, &end, 16);
    if (end - *s > 8)
        return false;
    *s = end;
    return true;
}

/* Accepts what nvmlDeviceGetHandleByPciBusId accepts: [domain:]bus:device[.function], hex. */
bool pci_parse_bus_id(const char *text, unsigned int *domain, unsigned int *bus,
                      unsigned int *device, unsigned int *function)
{
    unsigned long part[3], fn = 0;
    unsigned int n = 0;
    const char *s = text;
    for (;;) {
        if (n == 3 || !parse_hex_field(&s, &part[n]))
            return false;
        n++;
        if (*s != ':')
            break;
        s++;
    }
    if (n < 2)
        return false;
    if (*s == '.') {
        s++;
        if (!parse_hex_field(&s, &fn))
            return false;
    }
    if (*s != '\0' || part[n - 2] > 0xff || part[n - 1] > 0x1f || fn > 7)
        return false;
    *domain = n == 3 ? (unsigned int)part[0] : 0;
    *bus = (unsigned int)part[n - 2];
    *device = (unsigned int)part[n - 1];
    *function = (unsigned int)fn;
    return true;
}

/* A decimal or 0x-prefixed hexadecimal number that fills the whole string. */
bool parse_uint(const char *text, unsigned int *out)
{
    char *end;
    int base = (text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) ? 16 : 10;
    const char *digits = base == 16 ? text + 2 : text;
    if (!(base == 16 ? isxdigit((unsigned char)*digits) : isdigit((unsigned char)*digits)))
        return false;
    unsigned long long v = strtoull(text, &end, base);
    if (*end != '\0' || v > UINT_MAX)
        return false;
    *out = (unsigned int)v;
    return true;
}

/* A non-negative decimal such as "41.5", returned multiplied by `scale` (a power of ten);
   more fractional digits than the scale can hold are an error, not silently dropped. */
bool parse_milli(const char *text, unsigned int scale, unsigned int *out)
{
    unsigned long long v = 0;
    unsigned int frac_scale = scale;
    const char *s = text;
    if (!isdigit((unsigned char)*s))
        return false;
    for (; isdigit((unsigned char)*s); s++) {
        v = v * 10 + (unsigned int)(*s - '0');
        if (v > UINT_MAX)
            return false;
    }
    v *= scale;
    if (*s == '.') {
        for (s++; isdigit((unsigned char)*s); s++) {
            frac_scale /= 10;
            if (frac_scale == 0)
                return false;
            v += (unsigned long long)(*s - '0') * frac_scale;
        }
    }
    if (*s != '\0' || v > UINT_MAX)
        return false;
    *out = (unsigned int)v;
    return true;
}
