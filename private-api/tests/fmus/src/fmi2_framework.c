/* Generic part of the FMI 2.0 test FMUs: lifecycle, variable access, ME and CS entry points. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmi2_framework.h"

#define INST ((Instance *)c)

/* reject a NULL instance before touching it, as masters sometimes pass one after a failed instantiate */
#define CHECK_INSTANCE(c) \
    do { if ((c) == NULL) return fmi2Error; } while (0)

void fmu_log(Instance *inst, fmi2Status status, const char *category, const char *fmt, ...) {
    char message[1024];
    va_list args;

    if (inst == NULL || inst->callbacks.logger == NULL) return;
    if (status == fmi2OK && !inst->loggingOn) return;

    va_start(args, fmt);
    vsnprintf(message, sizeof(message), fmt, args);
    va_end(args);

    /* pass the text as an argument so '%' in variable values cannot be misread as a format */
    inst->callbacks.logger(inst->callbacks.componentEnvironment, inst->instanceName, status,
                           category, "%s", message);
}

void fmu_set_string(Instance *inst, fmi2ValueReference vr, const char *value) {
    char *copy = strdup(value);
    free(inst->s[vr]);
    inst->s[vr] = copy;
}

static void free_strings(Instance *inst) {
    int k;
    for (k = 0; k < MAX_VARS; k++) {
        free(inst->s[k]);
        inst->s[k] = NULL;
    }
}

static void reset_instance(Instance *inst) {
    free_strings(inst);
    memset(inst->r, 0, sizeof(inst->r));
    memset(inst->i, 0, sizeof(inst->i));
    memset(inst->b, 0, sizeof(inst->b));
    inst->time = 0;
    inst->flags = 0;
    inst->state = STATE_INSTANTIATED;
    model_set_start_values(inst);
    model_calculate(inst);
}

void fmu_integrate_rk4(Instance *inst, fmi2Real h, fmi2Real max_dt) {
    fmi2Real x0[MAX_VARS], k1[MAX_VARS], k2[MAX_VARS], k3[MAX_VARS], k4[MAX_VARS];
    const fmi2Real t0 = inst->time;
    int n = (int)ceil(h / max_dt - 1e-9);
    int step, j;
    fmi2Real dt, ts;

    if (n < 1) n = 1;
    dt = h / n;

    for (step = 0; step < n; step++) {
        ts = t0 + step * dt;
        for (j = 0; j < MODEL_NX; j++) x0[j] = inst->r[MODEL_STATES[j]];

        inst->time = ts;
        model_calculate(inst);
        for (j = 0; j < MODEL_NX; j++) k1[j] = inst->r[MODEL_DERIVATIVES[j]];

        inst->time = ts + dt / 2;
        for (j = 0; j < MODEL_NX; j++) inst->r[MODEL_STATES[j]] = x0[j] + dt / 2 * k1[j];
        model_calculate(inst);
        for (j = 0; j < MODEL_NX; j++) k2[j] = inst->r[MODEL_DERIVATIVES[j]];

        for (j = 0; j < MODEL_NX; j++) inst->r[MODEL_STATES[j]] = x0[j] + dt / 2 * k2[j];
        model_calculate(inst);
        for (j = 0; j < MODEL_NX; j++) k3[j] = inst->r[MODEL_DERIVATIVES[j]];

        inst->time = ts + dt;
        for (j = 0; j < MODEL_NX; j++) inst->r[MODEL_STATES[j]] = x0[j] + dt * k3[j];
        model_calculate(inst);
        for (j = 0; j < MODEL_NX; j++) k4[j] = inst->r[MODEL_DERIVATIVES[j]];

        for (j = 0; j < MODEL_NX; j++)
            inst->r[MODEL_STATES[j]] = x0[j] + dt / 6 * (k1[j] + 2 * k2[j] + 2 * k3[j] + k4[j]);
    }

    /* land exactly on the communication point instead of the accumulated sub-step sum */
    inst->time = t0 + h;
    model_calculate(inst);
}

/* ---- common functions ---- */

const char *fmi2GetTypesPlatform(void) { return fmi2TypesPlatform; }

const char *fmi2GetVersion(void) { return fmi2Version; }

fmi2Status fmi2SetDebugLogging(fmi2Component c, fmi2Boolean loggingOn, size_t nCategories,
                               const fmi2String categories[]) {
    (void)nCategories;
    (void)categories;
    CHECK_INSTANCE(c);
    INST->loggingOn = loggingOn;
    return fmi2OK;
}

fmi2Component fmi2Instantiate(fmi2String instanceName, fmi2Type fmuType, fmi2String fmuGUID,
                              fmi2String fmuResourceLocation, const fmi2CallbackFunctions *functions,
                              fmi2Boolean visible, fmi2Boolean loggingOn) {
    Instance *inst;
    (void)fmuResourceLocation;
    (void)visible;

    if (functions == NULL) return NULL;

    inst = calloc(1, sizeof(Instance));
    if (inst == NULL) return NULL;

    inst->instanceName = strdup(instanceName != NULL ? instanceName : "");
    inst->type = fmuType;
    inst->callbacks = *functions;
    inst->loggingOn = loggingOn;

    if (fmuGUID == NULL || strcmp(fmuGUID, MODEL_GUID) != 0) {
        fmu_log(inst, fmi2Error, "logStatusError", "Wrong GUID %s, expected %s.",
                fmuGUID != NULL ? fmuGUID : "(null)", MODEL_GUID);
        free(inst->instanceName);
        free(inst);
        return NULL;
    }

    reset_instance(inst);
    fmu_log(inst, fmi2OK, "logAll", "Instantiated %s.", inst->instanceName);
    return inst;
}

void fmi2FreeInstance(fmi2Component c) {
    if (c == NULL) return;
    free_strings(INST);
    free(INST->instanceName);
    free(c);
}

fmi2Status fmi2SetupExperiment(fmi2Component c, fmi2Boolean toleranceDefined, fmi2Real tolerance,
                               fmi2Real startTime, fmi2Boolean stopTimeDefined, fmi2Real stopTime) {
    (void)toleranceDefined;
    (void)tolerance;
    (void)stopTimeDefined;
    (void)stopTime;
    CHECK_INSTANCE(c);
    if (INST->state != STATE_INSTANTIATED) {
        fmu_log(INST, fmi2Error, "logStatusError", "fmi2SetupExperiment is only allowed after instantiation.");
        return fmi2Error;
    }
    INST->time = startTime;
    return fmi2OK;
}

fmi2Status fmi2EnterInitializationMode(fmi2Component c) {
    CHECK_INSTANCE(c);
    if (INST->state != STATE_INSTANTIATED) {
        fmu_log(INST, fmi2Error, "logStatusError", "fmi2EnterInitializationMode is only allowed after instantiation.");
        return fmi2Error;
    }
    INST->state = STATE_INITIALIZATION;
    return fmi2OK;
}

fmi2Status fmi2ExitInitializationMode(fmi2Component c) {
    CHECK_INSTANCE(c);
    if (INST->state != STATE_INITIALIZATION) {
        fmu_log(INST, fmi2Error, "logStatusError", "fmi2ExitInitializationMode is only allowed in initialization mode.");
        return fmi2Error;
    }
    model_calculate(INST);
    INST->state = INST->type == fmi2CoSimulation ? STATE_STEP : STATE_EVENT;
    return fmi2OK;
}

fmi2Status fmi2Terminate(fmi2Component c) {
    CHECK_INSTANCE(c);
    INST->state = STATE_TERMINATED;
    return fmi2OK;
}

fmi2Status fmi2Reset(fmi2Component c) {
    CHECK_INSTANCE(c);
    INST->resets++;
    reset_instance(INST);
    return fmi2OK;
}

/* ---- getters and setters ---- */

/* validate value references against the model's variable types */
static fmi2Status check_vrs(Instance *inst, const fmi2ValueReference vr[], size_t nvr, const char *type) {
    const size_t n = strlen(MODEL_VARIABLE_TYPES);
    size_t k;
    if (nvr > 0 && vr == NULL) return fmi2Error;
    for (k = 0; k < nvr; k++) {
        if (vr[k] >= n || vr[k] >= MAX_VARS || MODEL_VARIABLE_TYPES[vr[k]] != type[0]) {
            fmu_log(inst, fmi2Error, "logStatusError", "Unknown %s value reference %u.", type, vr[k]);
            return fmi2Error;
        }
    }
    return fmi2OK;
}

fmi2Status fmi2GetReal(fmi2Component c, const fmi2ValueReference vr[], size_t nvr, fmi2Real value[]) {
    size_t k;
    CHECK_INSTANCE(c);
    if (check_vrs(INST, vr, nvr, "Real") != fmi2OK) return fmi2Error;
    model_calculate(INST);
    for (k = 0; k < nvr; k++) value[k] = INST->r[vr[k]];
    return fmi2OK;
}

fmi2Status fmi2GetInteger(fmi2Component c, const fmi2ValueReference vr[], size_t nvr, fmi2Integer value[]) {
    size_t k;
    CHECK_INSTANCE(c);
    if (check_vrs(INST, vr, nvr, "Integer") != fmi2OK) return fmi2Error;
    model_calculate(INST);
    for (k = 0; k < nvr; k++) value[k] = INST->i[vr[k]];
    return fmi2OK;
}

fmi2Status fmi2GetBoolean(fmi2Component c, const fmi2ValueReference vr[], size_t nvr, fmi2Boolean value[]) {
    size_t k;
    CHECK_INSTANCE(c);
    if (check_vrs(INST, vr, nvr, "Boolean") != fmi2OK) return fmi2Error;
    model_calculate(INST);
    for (k = 0; k < nvr; k++) value[k] = INST->b[vr[k]];
    return fmi2OK;
}

fmi2Status fmi2GetString(fmi2Component c, const fmi2ValueReference vr[], size_t nvr, fmi2String value[]) {
    size_t k;
    CHECK_INSTANCE(c);
    if (check_vrs(INST, vr, nvr, "String") != fmi2OK) return fmi2Error;
    for (k = 0; k < nvr; k++) value[k] = INST->s[vr[k]] != NULL ? INST->s[vr[k]] : "";
    return fmi2OK;
}

fmi2Status fmi2SetReal(fmi2Component c, const fmi2ValueReference vr[], size_t nvr, const fmi2Real value[]) {
    size_t k;
    CHECK_INSTANCE(c);
    if (check_vrs(INST, vr, nvr, "Real") != fmi2OK) return fmi2Error;
    for (k = 0; k < nvr; k++) INST->r[vr[k]] = value[k];
    return fmi2OK;
}

fmi2Status fmi2SetInteger(fmi2Component c, const fmi2ValueReference vr[], size_t nvr, const fmi2Integer value[]) {
    size_t k;
    CHECK_INSTANCE(c);
    if (check_vrs(INST, vr, nvr, "Integer") != fmi2OK) return fmi2Error;
    for (k = 0; k < nvr; k++) INST->i[vr[k]] = value[k];
    return fmi2OK;
}

fmi2Status fmi2SetBoolean(fmi2Component c, const fmi2ValueReference vr[], size_t nvr, const fmi2Boolean value[]) {
    size_t k;
    CHECK_INSTANCE(c);
    if (check_vrs(INST, vr, nvr, "Boolean") != fmi2OK) return fmi2Error;
    for (k = 0; k < nvr; k++) INST->b[vr[k]] = value[k] ? fmi2True : fmi2False;
    return fmi2OK;
}

fmi2Status fmi2SetString(fmi2Component c, const fmi2ValueReference vr[], size_t nvr, const fmi2String value[]) {
    size_t k;
    CHECK_INSTANCE(c);
    if (check_vrs(INST, vr, nvr, "String") != fmi2OK) return fmi2Error;
    for (k = 0; k < nvr; k++) {
        if (value[k] == NULL) {
            fmu_log(INST, fmi2Error, "logStatusError", "NULL passed for String value reference %u.", vr[k]);
            return fmi2Error;
        }
        fmu_set_string(INST, vr[k], value[k]);
    }
    return fmi2OK;
}

/* ---- unsupported optional features (capability flags are false in modelDescription.xml) ---- */

static fmi2Status unsupported(fmi2Component c, const char *function) {
    CHECK_INSTANCE(c);
    fmu_log(INST, fmi2Error, "logStatusError", "%s is not supported.", function);
    return fmi2Error;
}

fmi2Status fmi2GetFMUstate(fmi2Component c, fmi2FMUstate *FMUstate) {
    (void)FMUstate;
    return unsupported(c, "fmi2GetFMUstate");
}

fmi2Status fmi2SetFMUstate(fmi2Component c, fmi2FMUstate FMUstate) {
    (void)FMUstate;
    return unsupported(c, "fmi2SetFMUstate");
}

fmi2Status fmi2FreeFMUstate(fmi2Component c, fmi2FMUstate *FMUstate) {
    (void)FMUstate;
    return unsupported(c, "fmi2FreeFMUstate");
}

fmi2Status fmi2SerializedFMUstateSize(fmi2Component c, fmi2FMUstate FMUstate, size_t *size) {
    (void)FMUstate;
    (void)size;
    return unsupported(c, "fmi2SerializedFMUstateSize");
}

fmi2Status fmi2SerializeFMUstate(fmi2Component c, fmi2FMUstate FMUstate, fmi2Byte serializedState[], size_t size) {
    (void)FMUstate;
    (void)serializedState;
    (void)size;
    return unsupported(c, "fmi2SerializeFMUstate");
}

fmi2Status fmi2DeSerializeFMUstate(fmi2Component c, const fmi2Byte serializedState[], size_t size,
                                   fmi2FMUstate *FMUstate) {
    (void)serializedState;
    (void)size;
    (void)FMUstate;
    return unsupported(c, "fmi2DeSerializeFMUstate");
}

fmi2Status fmi2GetDirectionalDerivative(fmi2Component c, const fmi2ValueReference vUnknown_ref[], size_t nUnknown,
                                        const fmi2ValueReference vKnown_ref[], size_t nKnown,
                                        const fmi2Real dvKnown[], fmi2Real dvUnknown[]) {
    (void)vUnknown_ref;
    (void)nUnknown;
    (void)vKnown_ref;
    (void)nKnown;
    (void)dvKnown;
    (void)dvUnknown;
    return unsupported(c, "fmi2GetDirectionalDerivative");
}

/* ---- Model Exchange ---- */

fmi2Status fmi2EnterEventMode(fmi2Component c) {
    CHECK_INSTANCE(c);
    INST->state = STATE_EVENT;
    return fmi2OK;
}

fmi2Status fmi2NewDiscreteStates(fmi2Component c, fmi2EventInfo *eventInfo) {
    CHECK_INSTANCE(c);
    eventInfo->newDiscreteStatesNeeded = fmi2False;
    eventInfo->terminateSimulation = fmi2False;
    eventInfo->nominalsOfContinuousStatesChanged = fmi2False;
    eventInfo->valuesOfContinuousStatesChanged = fmi2False;
    eventInfo->nextEventTimeDefined = fmi2False;
    eventInfo->nextEventTime = 0;
    return fmi2OK;
}

fmi2Status fmi2EnterContinuousTimeMode(fmi2Component c) {
    CHECK_INSTANCE(c);
    INST->state = STATE_CONTINUOUS_TIME;
    return fmi2OK;
}

fmi2Status fmi2CompletedIntegratorStep(fmi2Component c, fmi2Boolean noSetFMUStatePriorToCurrentPoint,
                                       fmi2Boolean *enterEventMode, fmi2Boolean *terminateSimulation) {
    (void)noSetFMUStatePriorToCurrentPoint;
    CHECK_INSTANCE(c);
    *enterEventMode = fmi2False;
    *terminateSimulation = fmi2False;
    return fmi2OK;
}

fmi2Status fmi2SetTime(fmi2Component c, fmi2Real time) {
    CHECK_INSTANCE(c);
    INST->time = time;
    return fmi2OK;
}

static fmi2Status check_nx(Instance *inst, size_t nx) {
    if (nx != (size_t)MODEL_NX) {
        fmu_log(inst, fmi2Error, "logStatusError", "Expected %d continuous states but got %zu.", MODEL_NX, nx);
        return fmi2Error;
    }
    return fmi2OK;
}

fmi2Status fmi2SetContinuousStates(fmi2Component c, const fmi2Real x[], size_t nx) {
    size_t k;
    CHECK_INSTANCE(c);
    if (check_nx(INST, nx) != fmi2OK) return fmi2Error;
    for (k = 0; k < nx; k++) INST->r[MODEL_STATES[k]] = x[k];
    return fmi2OK;
}

fmi2Status fmi2GetDerivatives(fmi2Component c, fmi2Real derivatives[], size_t nx) {
    size_t k;
    CHECK_INSTANCE(c);
    if (check_nx(INST, nx) != fmi2OK) return fmi2Error;
    model_calculate(INST);
    for (k = 0; k < nx; k++) derivatives[k] = INST->r[MODEL_DERIVATIVES[k]];
    return fmi2OK;
}

fmi2Status fmi2GetEventIndicators(fmi2Component c, fmi2Real eventIndicators[], size_t ni) {
    (void)eventIndicators;
    CHECK_INSTANCE(c);
    /* none of the FMI 2 test models has state events */
    return ni == 0 ? fmi2OK : fmi2Error;
}

fmi2Status fmi2GetContinuousStates(fmi2Component c, fmi2Real x[], size_t nx) {
    size_t k;
    CHECK_INSTANCE(c);
    if (check_nx(INST, nx) != fmi2OK) return fmi2Error;
    for (k = 0; k < nx; k++) x[k] = INST->r[MODEL_STATES[k]];
    return fmi2OK;
}

fmi2Status fmi2GetNominalsOfContinuousStates(fmi2Component c, fmi2Real x_nominal[], size_t nx) {
    size_t k;
    CHECK_INSTANCE(c);
    if (check_nx(INST, nx) != fmi2OK) return fmi2Error;
    for (k = 0; k < nx; k++) x_nominal[k] = 1.0;
    return fmi2OK;
}

/* ---- Co-Simulation ---- */

fmi2Status fmi2SetRealInputDerivatives(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,
                                       const fmi2Integer order[], const fmi2Real value[]) {
    (void)vr;
    (void)nvr;
    (void)order;
    (void)value;
    return unsupported(c, "fmi2SetRealInputDerivatives");
}

fmi2Status fmi2GetRealOutputDerivatives(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,
                                        const fmi2Integer order[], fmi2Real value[]) {
    (void)vr;
    (void)nvr;
    (void)order;
    (void)value;
    return unsupported(c, "fmi2GetRealOutputDerivatives");
}

fmi2Status fmi2DoStep(fmi2Component c, fmi2Real currentCommunicationPoint, fmi2Real communicationStepSize,
                      fmi2Boolean noSetFMUStatePriorToCurrentPoint) {
    fmi2Status status;
    (void)noSetFMUStatePriorToCurrentPoint;
    CHECK_INSTANCE(c);

    if (INST->state != STATE_STEP) {
        fmu_log(INST, fmi2Error, "logStatusError", "fmi2DoStep is only allowed in step mode.");
        return fmi2Error;
    }
    if (communicationStepSize < 0) {
        fmu_log(INST, fmi2Error, "logStatusError", "Negative communication step size %g.", communicationStepSize);
        return fmi2Error;
    }

    /* trust the master's time to avoid accumulating round-off over many steps */
    INST->time = currentCommunicationPoint;
    status = model_do_step(INST, communicationStepSize);
    if (status == fmi2Error || status == fmi2Fatal) INST->state = STATE_ERROR;
    return status;
}

fmi2Status fmi2CancelStep(fmi2Component c) { return unsupported(c, "fmi2CancelStep"); }

fmi2Status fmi2GetStatus(fmi2Component c, const fmi2StatusKind s, fmi2Status *value) {
    CHECK_INSTANCE(c);
    if (s != fmi2DoStepStatus) return fmi2Discard;
    *value = INST->state == STATE_ERROR ? fmi2Error : fmi2OK;
    return fmi2OK;
}

fmi2Status fmi2GetRealStatus(fmi2Component c, const fmi2StatusKind s, fmi2Real *value) {
    CHECK_INSTANCE(c);
    if (s != fmi2LastSuccessfulTime) return fmi2Discard;
    *value = INST->time;
    return fmi2OK;
}

fmi2Status fmi2GetIntegerStatus(fmi2Component c, const fmi2StatusKind s, fmi2Integer *value) {
    (void)s;
    (void)value;
    CHECK_INSTANCE(c);
    return fmi2Discard;
}

fmi2Status fmi2GetBooleanStatus(fmi2Component c, const fmi2StatusKind s, fmi2Boolean *value) {
    CHECK_INSTANCE(c);
    if (s != fmi2Terminated) return fmi2Discard;
    *value = fmi2False;
    return fmi2OK;
}

fmi2Status fmi2GetStringStatus(fmi2Component c, const fmi2StatusKind s, fmi2String *value) {
    (void)s;
    (void)value;
    CHECK_INSTANCE(c);
    return fmi2Discard;
}
