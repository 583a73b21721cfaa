/* Minimal FMI 2.0 framework shared by the FMI 2 test FMUs (ModelExchange and CoSimulation).
 *
 * Each model provides the MODEL_* constants and the model_* hooks declared below and stores its
 * variables in the per-type arrays of the Instance, indexed directly by value reference.
 * Value references are unique across all types so that consumers keyed by VR alone work too.
 */
#ifndef FMI2_FRAMEWORK_H
#define FMI2_FRAMEWORK_H

#include "fmi2Functions.h"

#define MAX_VARS 16

typedef enum {
    STATE_INSTANTIATED,
    STATE_INITIALIZATION,
    STATE_STEP,            /* CoSimulation: between DoStep calls */
    STATE_EVENT,           /* ModelExchange */
    STATE_CONTINUOUS_TIME, /* ModelExchange */
    STATE_TERMINATED,
    STATE_ERROR
} InstanceState;

typedef struct {
    char *instanceName;
    fmi2Type type;
    fmi2CallbackFunctions callbacks;
    fmi2Boolean loggingOn;
    InstanceState state;
    fmi2Real time;
    fmi2Real r[MAX_VARS];
    fmi2Integer i[MAX_VARS];
    fmi2Boolean b[MAX_VARS];
    char *s[MAX_VARS];
    int flags; /* free for the model (e.g. "action already done") */
    int resets; /* fmi2Reset calls on this instance; kept across them (Hostile's inexact reset) */
} Instance;

/* ---- provided by the model ---- */

extern const char *const MODEL_GUID;
/* type of each value reference: MODEL_VARIABLE_TYPES[vr] is 'R', 'I', 'B' or 'S' (Real, Integer, ...) */
extern const char MODEL_VARIABLE_TYPES[];
/* continuous states and their derivatives (Real VRs), may be 0 / NULL */
extern const int MODEL_NX;
extern const fmi2ValueReference MODEL_STATES[];
extern const fmi2ValueReference MODEL_DERIVATIVES[];

/* set all variables to their start values (strings via fmu_set_string) */
void model_set_start_values(Instance *inst);
/* recompute derivatives and outputs from the current states, inputs and parameters */
void model_calculate(Instance *inst);
/* advance a CoSimulation instance from inst->time by h, then update inst->time */
fmi2Status model_do_step(Instance *inst, fmi2Real h);

/* ---- provided by the framework ---- */

/* log through the FMI logger callback; debug messages (fmi2OK) only if logging is on */
void fmu_log(Instance *inst, fmi2Status status, const char *category, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* replace a String variable with a heap copy of value */
void fmu_set_string(Instance *inst, fmi2ValueReference vr, const char *value);
/* integrate the continuous states over h with classical RK4 sub-steps of at most max_dt */
void fmu_integrate_rk4(Instance *inst, fmi2Real h, fmi2Real max_dt);

#endif
