/* Callgrind's client requests, for ctypes. A case turns instrumentation on once (a switch
 * throws away every translated block, so it is not done per call), then each counted call
 * lies between a zeroing and a dump. Outside valgrind each request is a few no-op
 * instructions. */
#include <valgrind/callgrind.h>

int bench_running_on_valgrind(void) { return RUNNING_ON_VALGRIND; }

void bench_instrumentation_on(void) { CALLGRIND_START_INSTRUMENTATION; }

void bench_instrumentation_off(void) { CALLGRIND_STOP_INSTRUMENTATION; }

void bench_count_start(void) { CALLGRIND_ZERO_STATS; }

void bench_count_stop(const char *name) { CALLGRIND_DUMP_STATS_AT(name); }
