#include <stdio.h>
#include <string.h>

#include <uv.h>

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("swarmd %s (libuv %s)\n", SWD_VERSION, uv_version_string());
        return 0;
    }
    fprintf(stderr, "usage: swarmd --version\n");
    return 2;
}
