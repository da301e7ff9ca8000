// heidid: serves the Core over HTTP (see docs/design.md and SPEC §9).
#include <cstdio>

int main() {
    std::fprintf(stderr, "heidid: not built yet\n");
    return 1;
}
