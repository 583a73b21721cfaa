/* Direct feedthrough of Real (scaled by gain), Integer and Boolean inputs (FMI 2.0 ME + CS). */
#include "fmi2_framework.h"

enum { VR_REAL_IN, VR_REAL_OUT, VR_GAIN, VR_INT_IN, VR_INT_OUT, VR_BOOL_IN, VR_BOOL_OUT, VR_LABEL };

const char *const MODEL_GUID = "{01ca0f48-204a-427b-86f2-518a3386fe82}";
const char MODEL_VARIABLE_TYPES[] = "RRRIIBBS";
const int MODEL_NX = 0;
const fmi2ValueReference MODEL_STATES[] = {0};
const fmi2ValueReference MODEL_DERIVATIVES[] = {0};

void model_set_start_values(Instance *inst) {
    inst->r[VR_REAL_IN] = 0;
    inst->r[VR_GAIN] = 1;
    inst->i[VR_INT_IN] = 0;
    inst->b[VR_BOOL_IN] = fmi2False;
    fmu_set_string(inst, VR_LABEL, "x");
}

void model_calculate(Instance *inst) {
    inst->r[VR_REAL_OUT] = inst->r[VR_GAIN] * inst->r[VR_REAL_IN];
    inst->i[VR_INT_OUT] = inst->i[VR_INT_IN];
    inst->b[VR_BOOL_OUT] = inst->b[VR_BOOL_IN];
}

fmi2Status model_do_step(Instance *inst, fmi2Real h) {
    inst->time += h;
    model_calculate(inst);
    return fmi2OK;
}
