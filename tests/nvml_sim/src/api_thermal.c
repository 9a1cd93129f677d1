/* Temperatures, thermal thresholds and fans. */
#include "sim.h"

/*
 * Idle temperature plus the model's coefficient times the draw above idle; a heatsink fault
 * multiplies the coefficient. A draw below idle (an injected reading) does not cool below idle.
 */
unsigned int temperature_current(const struct dev_ctx *c)
{
    unsigned int power = power_usage_current(c), idle = c->gpu->idle_power_mw;
    unsigned long long factor_milli = c->gs->heatsink_milli ? c->gs->heatsink_milli : 1000;
    if (c->gs->has_temp)
        return c->gs->temp_c;
    if (power <= idle)
        return c->gpu->idle_temp_c;
    /* mW x milli-C/W x milli = 1e-9 C; rounded to the nearest degree */
    unsigned long long rise =
        ((unsigned long long)(power - idle) * c->model->thermal_mc_per_w * factor_milli +
         500000000ULL) /
        1000000000ULL;
    return c->gpu->idle_temp_c + (unsigned int)rise;
}

NVML_API nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device,
                                               nvmlTemperatureSensors_t sensor,
                                               unsigned int *temp)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    if (rc == NVML_SUCCESS && sensor != NVML_TEMPERATURE_GPU)
        rc = NVML_ERROR_INVALID_ARGUMENT;
    return rc != NVML_SUCCESS ? rc : put_uint(temp, temperature_current(&c));
}

NVML_API nvmlReturn_t nvmlDeviceGetTemperatureV(nvmlDevice_t device, nvmlTemperature_v1_t *temp)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    if (rc == NVML_SUCCESS && temp == NULL)
        rc = NVML_ERROR_INVALID_ARGUMENT;
    if (rc == NVML_SUCCESS && temp->version != nvmlTemperature_v1)
        rc = NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    if (rc == NVML_SUCCESS && temp->sensorType != NVML_TEMPERATURE_GPU)
        rc = NVML_ERROR_INVALID_ARGUMENT;
    if (rc == NVML_SUCCESS)
        temp->temperature = (int)temperature_current(&c);
    return rc;
}

/* Shutdown, slowdown and GPU max exist everywhere; the memory sensor only on HBM boards. The
   acoustic and other thresholds belong to boards with fans or to later APIs. */
NVML_API nvmlReturn_t nvmlDeviceGetTemperatureThreshold(nvmlDevice_t device,
                                                        nvmlTemperatureThresholds_t type,
                                                        unsigned int *temp)
{
    struct dev_ctx c;
    unsigned int value = 0;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    if (rc != NVML_SUCCESS)
        return rc;
    switch (type) {
    case NVML_TEMPERATURE_THRESHOLD_SHUTDOWN:
        value = c.model->temp_shutdown;
        break;
    case NVML_TEMPERATURE_THRESHOLD_SLOWDOWN:
        value = c.model->temp_slowdown;
        break;
    case NVML_TEMPERATURE_THRESHOLD_MEM_MAX:
        value = c.model->temp_mem_max;
        break;
    case NVML_TEMPERATURE_THRESHOLD_GPU_MAX:
        value = c.model->temp_gpu_max;
        break;
    default:
        return (unsigned int)type < NVML_TEMPERATURE_THRESHOLD_COUNT ? NVML_ERROR_NOT_SUPPORTED
                                                                      : NVML_ERROR_INVALID_ARGUMENT;
    }
    return value == 0 ? NVML_ERROR_NOT_SUPPORTED : put_uint(temp, value);
}

/* Passively cooled boards (every SXM module, most datacenter PCIe cards) have no fan to read. */
NVML_API nvmlReturn_t nvmlDeviceGetFanSpeed(nvmlDevice_t device, unsigned int *speed)
{
    struct dev_ctx c;
    nvmlReturn_t rc = dev_begin(&c, device, __func__);
    if (rc == NVML_SUCCESS && c.model->fan_speed == 0)
        rc = NVML_ERROR_NOT_SUPPORTED;
    return rc != NVML_SUCCESS ? rc : put_uint(speed, c.model->fan_speed);
}
