#include "CFuzzer.h"

// libFuzzer's runtime refers to this entry point even when it is driven through LLVMFuzzerRunDriver (as
// serval-fuzz does, to pick a target from its command line): one definition that does nothing, never called.
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    (void)data;
    (void)size;
    return 0;
}
