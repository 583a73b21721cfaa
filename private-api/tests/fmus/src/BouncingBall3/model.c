/* Bouncing ball, FMI 3.0 ModelExchange + CoSimulation: der(h) = v, der(v) = g, v := -e * v on impact.
 *
 * ME reports the impact through the event indicator h; CS integrates with a fixed inner step and
 * reflects the velocity inside the step. Once a bounce is slower than V_MIN the ball rests at h = 0.
 */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmi3Functions.h"

#define INSTANTIATION_TOKEN "{4ecb2cef-2557-4e10-8f5a-04bb6d9c66b0}"

enum { VR_TIME, VR_H, VR_DER_H, VR_V, VR_DER_V, VR_G, VR_E, N_VARIABLES };

#define N_STATES 2
#define N_EVENT_INDICATORS 1
#define V_MIN 0.1
#define CS_MAX_STEP 1e-3
/* CVode places the root within ~1e-13 s, so h may be a hair above zero at the event */
#define IMPACT_TOLERANCE 1e-6

typedef enum { ModelExchange, CoSimulation } InterfaceType;

typedef enum {
    STATE_INSTANTIATED,
    STATE_INITIALIZATION,
    STATE_EVENT,
    STATE_CONTINUOUS_TIME,
    STATE_STEP,
    STATE_TERMINATED,
    STATE_ERROR
} InstanceState;

typedef struct {
    char *instanceName;
    InterfaceType type;
    InstanceState state;
    fmi3InstanceEnvironment environment;
    fmi3LogMessageCallback logMessage;
    fmi3Boolean loggingOn;
    double time, h, v, g, e;
    fmi3Boolean resting;
} Instance;

#define INST ((Instance *)instance)

#define CHECK_INSTANCE() \
    do { if (instance == NULL) return fmi3Error; } while (0)

static void log_message(Instance *inst, fmi3Status status, const char *category, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void log_message(Instance *inst, fmi3Status status, const char *category, const char *fmt, ...) {
    char message[1024];
    va_list args;

    if (inst == NULL || inst->logMessage == NULL) return;
    if (status == fmi3OK && !inst->loggingOn) return;

    va_start(args, fmt);
    vsnprintf(message, sizeof(message), fmt, args);
    va_end(args);

    inst->logMessage(inst->environment, status, category, message);
}

static fmi3Status fail(fmi3Instance instance, const char *message) {
    CHECK_INSTANCE();
    log_message(INST, fmi3Error, "logStatusError", "%s", message);
    return fmi3Error;
}

static void set_start_values(Instance *inst) {
    inst->time = 0;
    inst->h = 1;
    inst->v = 0;
    inst->g = -9.81;
    inst->e = 0.7;
    inst->resting = fmi3False;
}

static double der_h(const Instance *inst) { return inst->resting ? 0 : inst->v; }

static double der_v(const Instance *inst) { return inst->resting ? 0 : inst->g; }

/* reflect a falling ball; stop it for good once the rebound is too slow to matter */
static void bounce(Instance *inst, double impact_velocity) {
    inst->h = 0;
    inst->v = -inst->e * impact_velocity;
    if (inst->v < V_MIN) {
        inst->v = 0;
        inst->resting = fmi3True;
        log_message(inst, fmi3OK, "logEvents", "Ball came to rest at t=%g.", inst->time);
    } else {
        log_message(inst, fmi3OK, "logEvents", "Bounce at t=%g with v=%g.", inst->time, inst->v);
    }
}

static fmi3Instance instantiate(InterfaceType type, fmi3String instanceName, fmi3String instantiationToken,
                                fmi3Boolean loggingOn, fmi3InstanceEnvironment environment,
                                fmi3LogMessageCallback logMessage) {
    Instance *inst;

    if (instantiationToken == NULL || strcmp(instantiationToken, INSTANTIATION_TOKEN) != 0) {
        if (logMessage != NULL) logMessage(environment, fmi3Error, "logStatusError", "Wrong instantiation token.");
        return NULL;
    }

    inst = calloc(1, sizeof(Instance));
    if (inst == NULL) return NULL;

    inst->instanceName = strdup(instanceName != NULL ? instanceName : "");
    inst->type = type;
    inst->state = STATE_INSTANTIATED;
    inst->environment = environment;
    inst->logMessage = logMessage;
    inst->loggingOn = loggingOn;
    set_start_values(inst);
    return inst;
}

/* ---- common functions ---- */

const char *fmi3GetVersion(void) { return fmi3Version; }

fmi3Status fmi3SetDebugLogging(fmi3Instance instance, fmi3Boolean loggingOn, size_t nCategories,
                               const fmi3String categories[]) {
    (void)nCategories;
    (void)categories;
    CHECK_INSTANCE();
    INST->loggingOn = loggingOn;
    return fmi3OK;
}

fmi3Instance fmi3InstantiateModelExchange(fmi3String instanceName, fmi3String instantiationToken,
                                          fmi3String resourcePath, fmi3Boolean visible, fmi3Boolean loggingOn,
                                          fmi3InstanceEnvironment instanceEnvironment,
                                          fmi3LogMessageCallback logMessage) {
    (void)resourcePath;
    (void)visible;
    return instantiate(ModelExchange, instanceName, instantiationToken, loggingOn, instanceEnvironment, logMessage);
}

fmi3Instance fmi3InstantiateCoSimulation(fmi3String instanceName, fmi3String instantiationToken,
                                         fmi3String resourcePath, fmi3Boolean visible, fmi3Boolean loggingOn,
                                         fmi3Boolean eventModeUsed, fmi3Boolean earlyReturnAllowed,
                                         const fmi3ValueReference requiredIntermediateVariables[],
                                         size_t nRequiredIntermediateVariables,
                                         fmi3InstanceEnvironment instanceEnvironment,
                                         fmi3LogMessageCallback logMessage,
                                         fmi3IntermediateUpdateCallback intermediateUpdate) {
    (void)resourcePath;
    (void)visible;
    (void)earlyReturnAllowed;
    (void)requiredIntermediateVariables;
    (void)nRequiredIntermediateVariables;
    (void)intermediateUpdate;
    if (eventModeUsed) {
        if (logMessage != NULL)
            logMessage(instanceEnvironment, fmi3Error, "logStatusError", "Event mode is not supported.");
        return NULL;
    }
    return instantiate(CoSimulation, instanceName, instantiationToken, loggingOn, instanceEnvironment, logMessage);
}

fmi3Instance fmi3InstantiateScheduledExecution(fmi3String instanceName, fmi3String instantiationToken,
                                               fmi3String resourcePath, fmi3Boolean visible,
                                               fmi3Boolean loggingOn, fmi3InstanceEnvironment instanceEnvironment,
                                               fmi3LogMessageCallback logMessage, fmi3ClockUpdateCallback clockUpdate,
                                               fmi3LockPreemptionCallback lockPreemption,
                                               fmi3UnlockPreemptionCallback unlockPreemption) {
    (void)instanceName;
    (void)instantiationToken;
    (void)resourcePath;
    (void)visible;
    (void)loggingOn;
    (void)clockUpdate;
    (void)lockPreemption;
    (void)unlockPreemption;
    if (logMessage != NULL)
        logMessage(instanceEnvironment, fmi3Error, "logStatusError", "Scheduled Execution is not supported.");
    return NULL;
}

void fmi3FreeInstance(fmi3Instance instance) {
    if (instance == NULL) return;
    free(INST->instanceName);
    free(instance);
}

fmi3Status fmi3EnterInitializationMode(fmi3Instance instance, fmi3Boolean toleranceDefined, fmi3Float64 tolerance,
                                       fmi3Float64 startTime, fmi3Boolean stopTimeDefined, fmi3Float64 stopTime) {
    (void)toleranceDefined;
    (void)tolerance;
    (void)stopTimeDefined;
    (void)stopTime;
    CHECK_INSTANCE();
    if (INST->state != STATE_INSTANTIATED) return fail(instance, "fmi3EnterInitializationMode is only allowed after instantiation.");
    INST->time = startTime;
    INST->state = STATE_INITIALIZATION;
    return fmi3OK;
}

fmi3Status fmi3ExitInitializationMode(fmi3Instance instance) {
    CHECK_INSTANCE();
    if (INST->state != STATE_INITIALIZATION) return fail(instance, "fmi3ExitInitializationMode is only allowed in initialization mode.");
    INST->state = INST->type == CoSimulation ? STATE_STEP : STATE_EVENT;
    return fmi3OK;
}

fmi3Status fmi3EnterEventMode(fmi3Instance instance) {
    CHECK_INSTANCE();
    if (INST->type != ModelExchange) return fail(instance, "Event mode is only supported in Model Exchange.");
    INST->state = STATE_EVENT;
    return fmi3OK;
}

fmi3Status fmi3Terminate(fmi3Instance instance) {
    CHECK_INSTANCE();
    INST->state = STATE_TERMINATED;
    return fmi3OK;
}

fmi3Status fmi3Reset(fmi3Instance instance) {
    CHECK_INSTANCE();
    set_start_values(INST);
    INST->state = STATE_INSTANTIATED;
    return fmi3OK;
}

/* ---- Float64 variables ---- */

fmi3Status fmi3GetFloat64(fmi3Instance instance, const fmi3ValueReference valueReferences[], size_t nValueReferences,
                          fmi3Float64 values[], size_t nValues) {
    size_t k;
    CHECK_INSTANCE();
    if (nValues != nValueReferences) return fail(instance, "fmi3GetFloat64: all variables are scalars, nValues must equal nValueReferences.");
    for (k = 0; k < nValueReferences; k++) {
        switch (valueReferences[k]) {
            case VR_TIME: values[k] = INST->time; break;
            case VR_H: values[k] = INST->h; break;
            case VR_DER_H: values[k] = der_h(INST); break;
            case VR_V: values[k] = INST->v; break;
            case VR_DER_V: values[k] = der_v(INST); break;
            case VR_G: values[k] = INST->g; break;
            case VR_E: values[k] = INST->e; break;
            default:
                log_message(INST, fmi3Error, "logStatusError", "fmi3GetFloat64: unknown value reference %u.", valueReferences[k]);
                return fmi3Error;
        }
    }
    return fmi3OK;
}

fmi3Status fmi3SetFloat64(fmi3Instance instance, const fmi3ValueReference valueReferences[], size_t nValueReferences,
                          const fmi3Float64 values[], size_t nValues) {
    size_t k;
    CHECK_INSTANCE();
    if (nValues != nValueReferences) return fail(instance, "fmi3SetFloat64: all variables are scalars, nValues must equal nValueReferences.");
    for (k = 0; k < nValueReferences; k++) {
        switch (valueReferences[k]) {
            case VR_H: INST->h = values[k]; break;
            case VR_V: INST->v = values[k]; break;
            case VR_G: INST->g = values[k]; break;
            case VR_E: INST->e = values[k]; break;
            default:
                log_message(INST, fmi3Error, "logStatusError", "fmi3SetFloat64: value reference %u is not settable.", valueReferences[k]);
                return fmi3Error;
        }
    }
    return fmi3OK;
}

/* ---- all other variable types: the model has none, so only empty requests succeed ---- */

#define NO_VARIABLES(function, value_type)                                                              \
    fmi3Status function(fmi3Instance instance, const fmi3ValueReference valueReferences[],             \
                        size_t nValueReferences, value_type values[], size_t nValues) {                 \
        (void)valueReferences;                                                                         \
        (void)values;                                                                                  \
        (void)nValues;                                                                                 \
        CHECK_INSTANCE();                                                                              \
        if (nValueReferences == 0) return fmi3OK;                                                      \
        log_message(INST, fmi3Error, "logStatusError", #function ": unknown value reference %u.",      \
                    valueReferences[0]);                                                               \
        return fmi3Error;                                                                              \
    }

NO_VARIABLES(fmi3GetFloat32, fmi3Float32)
NO_VARIABLES(fmi3GetInt8, fmi3Int8)
NO_VARIABLES(fmi3GetUInt8, fmi3UInt8)
NO_VARIABLES(fmi3GetInt16, fmi3Int16)
NO_VARIABLES(fmi3GetUInt16, fmi3UInt16)
NO_VARIABLES(fmi3GetInt32, fmi3Int32)
NO_VARIABLES(fmi3GetUInt32, fmi3UInt32)
NO_VARIABLES(fmi3GetInt64, fmi3Int64)
NO_VARIABLES(fmi3GetUInt64, fmi3UInt64)
NO_VARIABLES(fmi3GetBoolean, fmi3Boolean)
NO_VARIABLES(fmi3GetString, fmi3String)
NO_VARIABLES(fmi3SetFloat32, const fmi3Float32)
NO_VARIABLES(fmi3SetInt8, const fmi3Int8)
NO_VARIABLES(fmi3SetUInt8, const fmi3UInt8)
NO_VARIABLES(fmi3SetInt16, const fmi3Int16)
NO_VARIABLES(fmi3SetUInt16, const fmi3UInt16)
NO_VARIABLES(fmi3SetInt32, const fmi3Int32)
NO_VARIABLES(fmi3SetUInt32, const fmi3UInt32)
NO_VARIABLES(fmi3SetInt64, const fmi3Int64)
NO_VARIABLES(fmi3SetUInt64, const fmi3UInt64)
NO_VARIABLES(fmi3SetBoolean, const fmi3Boolean)
NO_VARIABLES(fmi3SetString, const fmi3String)

fmi3Status fmi3GetBinary(fmi3Instance instance, const fmi3ValueReference valueReferences[], size_t nValueReferences,
                         size_t valueSizes[], fmi3Binary values[], size_t nValues) {
    (void)valueReferences;
    (void)valueSizes;
    (void)values;
    (void)nValues;
    CHECK_INSTANCE();
    return nValueReferences == 0 ? fmi3OK : fail(instance, "fmi3GetBinary: the model has no Binary variables.");
}

fmi3Status fmi3SetBinary(fmi3Instance instance, const fmi3ValueReference valueReferences[], size_t nValueReferences,
                         const size_t valueSizes[], const fmi3Binary values[], size_t nValues) {
    (void)valueReferences;
    (void)valueSizes;
    (void)values;
    (void)nValues;
    CHECK_INSTANCE();
    return nValueReferences == 0 ? fmi3OK : fail(instance, "fmi3SetBinary: the model has no Binary variables.");
}

fmi3Status fmi3GetClock(fmi3Instance instance, const fmi3ValueReference valueReferences[], size_t nValueReferences,
                        fmi3Clock values[]) {
    (void)valueReferences;
    (void)values;
    CHECK_INSTANCE();
    return nValueReferences == 0 ? fmi3OK : fail(instance, "fmi3GetClock: the model has no clocks.");
}

fmi3Status fmi3SetClock(fmi3Instance instance, const fmi3ValueReference valueReferences[], size_t nValueReferences,
                        const fmi3Clock values[]) {
    (void)valueReferences;
    (void)values;
    CHECK_INSTANCE();
    return nValueReferences == 0 ? fmi3OK : fail(instance, "fmi3SetClock: the model has no clocks.");
}

/* ---- unsupported optional features (capability flags are false in modelDescription.xml) ---- */

fmi3Status fmi3GetNumberOfVariableDependencies(fmi3Instance instance, fmi3ValueReference valueReference,
                                               size_t *nDependencies) {
    (void)valueReference;
    (void)nDependencies;
    return fail(instance, "fmi3GetNumberOfVariableDependencies is not supported.");
}

fmi3Status fmi3GetVariableDependencies(fmi3Instance instance, fmi3ValueReference dependent,
                                       size_t elementIndicesOfDependent[], fmi3ValueReference independents[],
                                       size_t elementIndicesOfIndependents[], fmi3DependencyKind dependencyKinds[],
                                       size_t nDependencies) {
    (void)dependent;
    (void)elementIndicesOfDependent;
    (void)independents;
    (void)elementIndicesOfIndependents;
    (void)dependencyKinds;
    (void)nDependencies;
    return fail(instance, "fmi3GetVariableDependencies is not supported.");
}

fmi3Status fmi3GetFMUState(fmi3Instance instance, fmi3FMUState *FMUState) {
    (void)FMUState;
    return fail(instance, "fmi3GetFMUState is not supported.");
}

fmi3Status fmi3SetFMUState(fmi3Instance instance, fmi3FMUState FMUState) {
    (void)FMUState;
    return fail(instance, "fmi3SetFMUState is not supported.");
}

fmi3Status fmi3FreeFMUState(fmi3Instance instance, fmi3FMUState *FMUState) {
    (void)FMUState;
    return fail(instance, "fmi3FreeFMUState is not supported.");
}

fmi3Status fmi3SerializedFMUStateSize(fmi3Instance instance, fmi3FMUState FMUState, size_t *size) {
    (void)FMUState;
    (void)size;
    return fail(instance, "fmi3SerializedFMUStateSize is not supported.");
}

fmi3Status fmi3SerializeFMUState(fmi3Instance instance, fmi3FMUState FMUState, fmi3Byte serializedState[],
                                 size_t size) {
    (void)FMUState;
    (void)serializedState;
    (void)size;
    return fail(instance, "fmi3SerializeFMUState is not supported.");
}

fmi3Status fmi3DeserializeFMUState(fmi3Instance instance, const fmi3Byte serializedState[], size_t size,
                                   fmi3FMUState *FMUState) {
    (void)serializedState;
    (void)size;
    (void)FMUState;
    return fail(instance, "fmi3DeserializeFMUState is not supported.");
}

fmi3Status fmi3GetDirectionalDerivative(fmi3Instance instance, const fmi3ValueReference unknowns[], size_t nUnknowns,
                                        const fmi3ValueReference knowns[], size_t nKnowns, const fmi3Float64 seed[],
                                        size_t nSeed, fmi3Float64 sensitivity[], size_t nSensitivity) {
    (void)unknowns;
    (void)nUnknowns;
    (void)knowns;
    (void)nKnowns;
    (void)seed;
    (void)nSeed;
    (void)sensitivity;
    (void)nSensitivity;
    return fail(instance, "fmi3GetDirectionalDerivative is not supported.");
}

fmi3Status fmi3GetAdjointDerivative(fmi3Instance instance, const fmi3ValueReference unknowns[], size_t nUnknowns,
                                    const fmi3ValueReference knowns[], size_t nKnowns, const fmi3Float64 seed[],
                                    size_t nSeed, fmi3Float64 sensitivity[], size_t nSensitivity) {
    (void)unknowns;
    (void)nUnknowns;
    (void)knowns;
    (void)nKnowns;
    (void)seed;
    (void)nSeed;
    (void)sensitivity;
    (void)nSensitivity;
    return fail(instance, "fmi3GetAdjointDerivative is not supported.");
}

fmi3Status fmi3EnterConfigurationMode(fmi3Instance instance) {
    return fail(instance, "fmi3EnterConfigurationMode is not supported (no structural parameters).");
}

fmi3Status fmi3ExitConfigurationMode(fmi3Instance instance) {
    return fail(instance, "fmi3ExitConfigurationMode is not supported (no structural parameters).");
}

fmi3Status fmi3GetIntervalDecimal(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                                  size_t nValueReferences, fmi3Float64 intervals[],
                                  fmi3IntervalQualifier qualifiers[]) {
    (void)valueReferences;
    (void)nValueReferences;
    (void)intervals;
    (void)qualifiers;
    return fail(instance, "fmi3GetIntervalDecimal: the model has no clocks.");
}

fmi3Status fmi3GetIntervalFraction(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                                   size_t nValueReferences, fmi3UInt64 counters[], fmi3UInt64 resolutions[],
                                   fmi3IntervalQualifier qualifiers[]) {
    (void)valueReferences;
    (void)nValueReferences;
    (void)counters;
    (void)resolutions;
    (void)qualifiers;
    return fail(instance, "fmi3GetIntervalFraction: the model has no clocks.");
}

fmi3Status fmi3GetShiftDecimal(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                               size_t nValueReferences, fmi3Float64 shifts[]) {
    (void)valueReferences;
    (void)nValueReferences;
    (void)shifts;
    return fail(instance, "fmi3GetShiftDecimal: the model has no clocks.");
}

fmi3Status fmi3GetShiftFraction(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                                size_t nValueReferences, fmi3UInt64 counters[], fmi3UInt64 resolutions[]) {
    (void)valueReferences;
    (void)nValueReferences;
    (void)counters;
    (void)resolutions;
    return fail(instance, "fmi3GetShiftFraction: the model has no clocks.");
}

fmi3Status fmi3SetIntervalDecimal(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                                  size_t nValueReferences, const fmi3Float64 intervals[]) {
    (void)valueReferences;
    (void)nValueReferences;
    (void)intervals;
    return fail(instance, "fmi3SetIntervalDecimal: the model has no clocks.");
}

fmi3Status fmi3SetIntervalFraction(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                                   size_t nValueReferences, const fmi3UInt64 counters[],
                                   const fmi3UInt64 resolutions[]) {
    (void)valueReferences;
    (void)nValueReferences;
    (void)counters;
    (void)resolutions;
    return fail(instance, "fmi3SetIntervalFraction: the model has no clocks.");
}

fmi3Status fmi3SetShiftDecimal(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                               size_t nValueReferences, const fmi3Float64 shifts[]) {
    (void)valueReferences;
    (void)nValueReferences;
    (void)shifts;
    return fail(instance, "fmi3SetShiftDecimal: the model has no clocks.");
}

fmi3Status fmi3SetShiftFraction(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                                size_t nValueReferences, const fmi3UInt64 counters[],
                                const fmi3UInt64 resolutions[]) {
    (void)valueReferences;
    (void)nValueReferences;
    (void)counters;
    (void)resolutions;
    return fail(instance, "fmi3SetShiftFraction: the model has no clocks.");
}

fmi3Status fmi3EvaluateDiscreteStates(fmi3Instance instance) {
    CHECK_INSTANCE();
    return fmi3OK;
}

fmi3Status fmi3UpdateDiscreteStates(fmi3Instance instance, fmi3Boolean *discreteStatesNeedUpdate,
                                    fmi3Boolean *terminateSimulation, fmi3Boolean *nominalsOfContinuousStatesChanged,
                                    fmi3Boolean *valuesOfContinuousStatesChanged, fmi3Boolean *nextEventTimeDefined,
                                    fmi3Float64 *nextEventTime) {
    fmi3Boolean changed = fmi3False;
    CHECK_INSTANCE();

    if (INST->type == ModelExchange && !INST->resting && INST->h <= IMPACT_TOLERANCE && INST->v < 0) {
        bounce(INST, INST->v);
        changed = fmi3True;
    }

    *discreteStatesNeedUpdate = fmi3False;
    *terminateSimulation = fmi3False;
    *nominalsOfContinuousStatesChanged = fmi3False;
    *valuesOfContinuousStatesChanged = changed;
    *nextEventTimeDefined = fmi3False;
    *nextEventTime = 0;
    return fmi3OK;
}

/* ---- Model Exchange ---- */

fmi3Status fmi3EnterContinuousTimeMode(fmi3Instance instance) {
    CHECK_INSTANCE();
    INST->state = STATE_CONTINUOUS_TIME;
    return fmi3OK;
}

fmi3Status fmi3CompletedIntegratorStep(fmi3Instance instance, fmi3Boolean noSetFMUStatePriorToCurrentPoint,
                                       fmi3Boolean *enterEventMode, fmi3Boolean *terminateSimulation) {
    (void)noSetFMUStatePriorToCurrentPoint;
    CHECK_INSTANCE();
    *enterEventMode = fmi3False;
    *terminateSimulation = fmi3False;
    return fmi3OK;
}

fmi3Status fmi3SetTime(fmi3Instance instance, fmi3Float64 time) {
    CHECK_INSTANCE();
    INST->time = time;
    return fmi3OK;
}

fmi3Status fmi3SetContinuousStates(fmi3Instance instance, const fmi3Float64 continuousStates[],
                                   size_t nContinuousStates) {
    CHECK_INSTANCE();
    if (nContinuousStates != N_STATES) return fail(instance, "fmi3SetContinuousStates: wrong number of states.");
    INST->h = continuousStates[0];
    INST->v = continuousStates[1];
    return fmi3OK;
}

fmi3Status fmi3GetContinuousStateDerivatives(fmi3Instance instance, fmi3Float64 derivatives[],
                                             size_t nContinuousStates) {
    CHECK_INSTANCE();
    if (nContinuousStates != N_STATES) return fail(instance, "fmi3GetContinuousStateDerivatives: wrong number of states.");
    derivatives[0] = der_h(INST);
    derivatives[1] = der_v(INST);
    return fmi3OK;
}

fmi3Status fmi3GetEventIndicators(fmi3Instance instance, fmi3Float64 eventIndicators[], size_t nEventIndicators) {
    CHECK_INSTANCE();
    if (nEventIndicators != N_EVENT_INDICATORS) return fail(instance, "fmi3GetEventIndicators: wrong number of event indicators.");
    /* a resting ball must not keep reporting a zero crossing */
    eventIndicators[0] = INST->resting ? 1 : INST->h;
    return fmi3OK;
}

fmi3Status fmi3GetContinuousStates(fmi3Instance instance, fmi3Float64 continuousStates[], size_t nContinuousStates) {
    CHECK_INSTANCE();
    if (nContinuousStates != N_STATES) return fail(instance, "fmi3GetContinuousStates: wrong number of states.");
    continuousStates[0] = INST->h;
    continuousStates[1] = INST->v;
    return fmi3OK;
}

fmi3Status fmi3GetNominalsOfContinuousStates(fmi3Instance instance, fmi3Float64 nominals[], size_t nContinuousStates) {
    CHECK_INSTANCE();
    if (nContinuousStates != N_STATES) return fail(instance, "fmi3GetNominalsOfContinuousStates: wrong number of states.");
    nominals[0] = 1;
    nominals[1] = 1;
    return fmi3OK;
}

fmi3Status fmi3GetNumberOfEventIndicators(fmi3Instance instance, size_t *nEventIndicators) {
    CHECK_INSTANCE();
    *nEventIndicators = N_EVENT_INDICATORS;
    return fmi3OK;
}

fmi3Status fmi3GetNumberOfContinuousStates(fmi3Instance instance, size_t *nContinuousStates) {
    CHECK_INSTANCE();
    *nContinuousStates = N_STATES;
    return fmi3OK;
}

/* ---- Co-Simulation ---- */

fmi3Status fmi3EnterStepMode(fmi3Instance instance) {
    CHECK_INSTANCE();
    INST->state = STATE_STEP;
    return fmi3OK;
}

fmi3Status fmi3GetOutputDerivatives(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                                    size_t nValueReferences, const fmi3Int32 orders[], fmi3Float64 values[],
                                    size_t nValues) {
    (void)valueReferences;
    (void)nValueReferences;
    (void)orders;
    (void)values;
    (void)nValues;
    return fail(instance, "fmi3GetOutputDerivatives is not supported.");
}

fmi3Status fmi3DoStep(fmi3Instance instance, fmi3Float64 currentCommunicationPoint, fmi3Float64 communicationStepSize,
                      fmi3Boolean noSetFMUStatePriorToCurrentPoint, fmi3Boolean *eventHandlingNeeded,
                      fmi3Boolean *terminateSimulation, fmi3Boolean *earlyReturn, fmi3Float64 *lastSuccessfulTime) {
    int n, k;
    double dt;
    (void)noSetFMUStatePriorToCurrentPoint;
    CHECK_INSTANCE();

    if (INST->type != CoSimulation || INST->state != STATE_STEP) return fail(instance, "fmi3DoStep is only allowed in step mode.");
    if (communicationStepSize < 0) return fail(instance, "fmi3DoStep: negative communication step size.");

    n = (int)ceil(communicationStepSize / CS_MAX_STEP - 1e-9);
    if (n < 1) n = 1;
    dt = communicationStepSize / n;

    for (k = 0; k < n && !INST->resting; k++) {
        /* exact ballistic update within the sub-step; clamp and reflect when it would pass the floor */
        const double v_next = INST->v + INST->g * dt;
        const double h_next = INST->h + INST->v * dt + 0.5 * INST->g * dt * dt;
        INST->time = currentCommunicationPoint + (k + 1) * dt;
        if (h_next <= 0 && v_next < 0) {
            bounce(INST, v_next);
        } else {
            INST->h = h_next;
            INST->v = v_next;
        }
    }

    INST->time = currentCommunicationPoint + communicationStepSize;
    *eventHandlingNeeded = fmi3False;
    *terminateSimulation = fmi3False;
    *earlyReturn = fmi3False;
    *lastSuccessfulTime = INST->time;
    return fmi3OK;
}

/* ---- Scheduled Execution ---- */

fmi3Status fmi3ActivateModelPartition(fmi3Instance instance, fmi3ValueReference clockReference,
                                      fmi3Float64 activationTime) {
    (void)clockReference;
    (void)activationTime;
    return fail(instance, "fmi3ActivateModelPartition: Scheduled Execution is not supported.");
}
