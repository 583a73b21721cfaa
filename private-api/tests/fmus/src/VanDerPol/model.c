/* Van der Pol oscillator: der(x0) = x1, der(x1) = mu * (1 - x0^2) * x1 - x0 (FMI 2.0 ME + CS). */
#include "fmi2_framework.h"

enum { VR_X0, VR_DER_X0, VR_X1, VR_DER_X1, VR_MU };

const char *const MODEL_GUID = "{a17bdc7b-34b3-47c6-b4d7-4fde8a94117b}";
const char MODEL_VARIABLE_TYPES[] = "RRRRR";
const int MODEL_NX = 2;
const fmi2ValueReference MODEL_STATES[] = {VR_X0, VR_X1};
const fmi2ValueReference MODEL_DERIVATIVES[] = {VR_DER_X0, VR_DER_X1};

/* CS inner step: RK4 at 1e-3 is far more accurate than CVode at its default tolerance */
#define CS_MAX_STEP 1e-3

void model_set_start_values(Instance *inst) {
    inst->r[VR_X0] = 2;
    inst->r[VR_X1] = 0;
    inst->r[VR_MU] = 1;
}

void model_calculate(Instance *inst) {
    const fmi2Real x0 = inst->r[VR_X0], x1 = inst->r[VR_X1], mu = inst->r[VR_MU];
    inst->r[VR_DER_X0] = x1;
    inst->r[VR_DER_X1] = mu * (1 - x0 * x0) * x1 - x0;
}

fmi2Status model_do_step(Instance *inst, fmi2Real h) {
    fmu_integrate_rk4(inst, h, CS_MAX_STEP);
    return fmi2OK;
}
