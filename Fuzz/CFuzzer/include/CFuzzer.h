#ifndef SERVAL_CFUZZER_H
#define SERVAL_CFUZZER_H
#include <stddef.h>
#include <stdint.h>

/// libFuzzer's driver (linked by -sanitize=fuzzer): runs `callback` on generated inputs with the usual
/// libFuzzer command line (corpus folders, -max_total_time=, -runs=, ...).
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
